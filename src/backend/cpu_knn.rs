//! CPU twin of `kernels/knn.cu` (exact k-nearest neighbours; see
//! [`crate::backend::Backend::knn_topk_merge`]): folds one tile of query ×
//! key products into per-row sorted top-k lists. Rows are independent, so
//! they run in parallel; within a row the keys are taken in increasing
//! index order, which is what makes ties go to the lower index.

use rayon::prelude::*;

/// The index of an empty list slot (the lists start as `∞` / `KNN_NONE`).
pub const KNN_NONE: u32 = u32::MAX;

/// See [`crate::backend::Backend::knn_topk_merge`]: `prod: [rows, cols]`,
/// `q_norms: [rows]`, `k_norms: [cols]`, `dist2`, `index: [rows, k]`
/// (indices as f32 bits).
#[allow(clippy::too_many_arguments)]
pub fn knn_topk_merge(
    rows: usize,
    cols: usize,
    k: usize,
    key_base: usize,
    self_base: Option<usize>,
    prod: &[f32],
    q_norms: &[f32],
    k_norms: &[f32],
    dist2: &mut [f32],
    index: &mut [f32],
) {
    assert!(k > 0, "knn_topk_merge: k = 0");
    assert!(prod.len() >= rows * cols && q_norms.len() >= rows && k_norms.len() >= cols, "knn_topk_merge: inputs shorter than the tile");
    assert!(dist2.len() >= rows * k && index.len() >= rows * k, "knn_topk_merge: lists shorter than rows × k");
    assert!(key_base + cols <= KNN_NONE as usize, "knn_topk_merge: key indices reach u32::MAX");
    if rows == 0 || cols == 0 {
        return;
    }
    let (dist2, index) = (&mut dist2[..rows * k], &mut index[..rows * k]);
    index.par_chunks_mut(k).zip(dist2.par_chunks_mut(k)).enumerate().for_each(|(i, (ir, dr))| {
        let skip = self_base.map(|o| o + i);
        let qn = q_norms[i];
        for (j, (&p, &kn)) in prod[i * cols..(i + 1) * cols].iter().zip(&k_norms[..cols]).enumerate() {
            let kj = key_base + j;
            if skip == Some(kj) {
                continue;
            }
            let d2 = (qn + kn - 2.0 * p).max(0.0);
            // Strictly smaller: equal distances keep the lower index.
            if d2 < dr[k - 1] {
                let mut pos = k - 1;
                while pos > 0 && dr[pos - 1] > d2 {
                    dr[pos] = dr[pos - 1];
                    ir[pos] = ir[pos - 1];
                    pos -= 1;
                }
                dr[pos] = d2;
                ir[pos] = f32::from_bits(kj as u32);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_k_nearest_ties_to_the_lower_index_and_skips_self() {
        // One query row (norm 0) against keys at squared distances 4, 1, 1, 0, 9.
        let prod = [0.0; 5];
        let kn = [4.0, 1.0, 1.0, 0.0, 9.0];
        let (mut d, mut ix) = (vec![f32::INFINITY; 3], vec![f32::from_bits(KNN_NONE); 3]);
        knn_topk_merge(1, 5, 3, 10, None, &prod, &[0.0], &kn, &mut d, &mut ix);
        assert_eq!(d, [0.0, 1.0, 1.0]);
        assert_eq!(ix.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), [13, 11, 12]);
        // Row 0 is key 13: left out, key 10 moves up.
        let (mut d, mut ix) = (vec![f32::INFINITY; 3], vec![f32::from_bits(KNN_NONE); 3]);
        knn_topk_merge(1, 5, 3, 10, Some(13), &prod, &[0.0], &kn, &mut d, &mut ix);
        assert_eq!(d, [1.0, 1.0, 4.0]);
        assert_eq!(ix.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), [11, 12, 10]);
    }
}
