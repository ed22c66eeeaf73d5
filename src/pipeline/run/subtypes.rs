//! Subtypes as every output shows them: only the non-empty ones, numbered
//! from S1 in their original order (DESC can end with clusters no anomaly
//! is assigned to; as categories they would break `rank_genes_groups`).

/// Renumbers `labels` (one per anomaly, in `0..k`) onto the non-empty
/// subtypes, drops the soft-assignment columns of the empty ones (`q` is
/// `labels.len() × k`, row-major; rows renormalised to sum 1) and returns
/// the new k and the sizes.
pub fn compact(labels: &mut [u32], q: &mut Vec<f32>, k: usize) -> (usize, Vec<usize>) {
    let mut sizes = vec![0usize; k];
    for &l in labels.iter() {
        if let Some(s) = sizes.get_mut(l as usize) {
            *s += 1;
        }
    }
    let keep: Vec<usize> = (0..k).filter(|&c| sizes[c] > 0).collect();
    if keep.len() == k {
        return (k, sizes);
    }
    let mut new_of = vec![u32::MAX; k];
    for (new, &old) in keep.iter().enumerate() {
        new_of[old] = new as u32;
    }
    for l in labels.iter_mut() {
        *l = new_of[*l as usize];
    }
    if k > 0 && q.len() == labels.len() * k {
        let mut out = Vec::with_capacity(labels.len() * keep.len());
        for row in q.chunks(k) {
            let kept: Vec<f32> = keep.iter().map(|&c| row[c]).collect();
            let s: f32 = kept.iter().sum();
            out.extend(kept.iter().map(|&v| if s > 0.0 { v / s } else { v }));
        }
        *q = out;
    }
    (keep.len(), keep.iter().map(|&c| sizes[c]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue #15 item 7: "9 subtype(s)" with sizes [0,0,0,0,0,0,461,329,317]
    /// becomes 3 subtypes S1–S3.
    #[test]
    fn empty_subtypes_are_dropped_and_renumbered() {
        let mut labels = vec![6, 7, 8, 8, 6];
        let mut q: Vec<f32> = labels.iter().flat_map(|&l| (0..9).map(move |c| if c == l { 0.5 } else { 0.0625 })).collect();
        let (k, sizes) = compact(&mut labels, &mut q, 9);
        assert_eq!((k, sizes), (3, vec![2, 1, 2]));
        assert_eq!(labels, [0, 1, 2, 2, 0]);
        assert_eq!(q.len(), 15);
        for row in q.chunks(3) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
        assert!(q[0] > q[1] && q[4] > q[3]);
        // Nothing to drop: unchanged.
        let (mut l2, mut q2) = (vec![0, 1], vec![0.9, 0.1, 0.2, 0.8]);
        assert_eq!(compact(&mut l2, &mut q2, 2), (2, vec![1, 1]));
        assert_eq!(q2, [0.9, 0.1, 0.2, 0.8]);
    }
}
