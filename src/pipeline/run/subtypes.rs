//! Subtypes as every output shows them: only those with at least
//! [`MIN_SUBTYPE_CELLS`] cells, numbered from S1 in their original order
//! (DESC can end with clusters no anomaly, or a single one, is assigned to;
//! as categories they break `rank_genes_groups`, which needs two cells per
//! group).

/// Fewest cells a subtype keeps: a group of one has no within-group
/// variance to test against.
pub const MIN_SUBTYPE_CELLS: usize = 2;

fn sizes_of(labels: &[u32], k: usize) -> Vec<usize> {
    let mut sizes = vec![0usize; k];
    for &l in labels {
        if let Some(s) = sizes.get_mut(l as usize) {
            *s += 1;
        }
    }
    sizes
}

/// Renumbers `labels` (one per anomaly, in `0..k`) onto the subtypes of at
/// least [`MIN_SUBTYPE_CELLS`] cells (all non-empty ones if none is that
/// large); a cell of a dropped subtype joins the kept one it has the
/// highest soft assignment to (the largest one without `q`). Drops the
/// soft-assignment columns of the dropped subtypes (`q` is
/// `labels.len() × k`, row-major; rows renormalised to sum 1) and returns
/// the new k and the sizes.
pub fn compact(labels: &mut [u32], q: &mut Vec<f32>, k: usize) -> (usize, Vec<usize>) {
    let sizes = sizes_of(labels, k);
    let mut keep: Vec<usize> = (0..k).filter(|&c| sizes[c] >= MIN_SUBTYPE_CELLS).collect();
    if keep.is_empty() {
        keep = (0..k).filter(|&c| sizes[c] > 0).collect();
    }
    if keep.len() == k {
        return (k, sizes);
    }
    let has_q = k > 0 && q.len() == labels.len() * k;
    let largest = keep.iter().copied().max_by_key(|&c| (sizes[c], std::cmp::Reverse(c))).unwrap_or(0);
    for (i, l) in labels.iter_mut().enumerate() {
        if keep.contains(&(*l as usize)) {
            continue;
        }
        *l = if has_q {
            let row = &q[i * k..(i + 1) * k];
            keep.iter().copied().max_by(|&a, &b| row[a].total_cmp(&row[b]).then(b.cmp(&a))).unwrap_or(largest) as u32
        } else {
            largest as u32
        };
    }
    let sizes = sizes_of(labels, k);
    let mut new_of = vec![u32::MAX; k];
    for (new, &old) in keep.iter().enumerate() {
        new_of[old] = new as u32;
    }
    for l in labels.iter_mut() {
        *l = new_of[*l as usize];
    }
    if has_q {
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
        let mut labels = vec![6, 7, 8, 8, 6, 7];
        let mut q: Vec<f32> = labels.iter().flat_map(|&l| (0..9).map(move |c| if c == l { 0.5 } else { 0.0625 })).collect();
        let (k, sizes) = compact(&mut labels, &mut q, 9);
        assert_eq!((k, sizes), (3, vec![2, 2, 2]));
        assert_eq!(labels, [0, 1, 2, 2, 0, 1]);
        assert_eq!(q.len(), 18);
        for row in q.chunks(3) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
        assert!(q[0] > q[1] && q[4] > q[3]);
        // Nothing to drop: unchanged.
        let (mut l2, mut q2) = (vec![0, 1], vec![0.9, 0.1, 0.2, 0.8]);
        assert_eq!(compact(&mut l2, &mut q2, 2), (2, vec![1, 1]));
        assert_eq!(q2, [0.9, 0.1, 0.2, 0.8]);
    }

    /// A subtype of one cell (seen after the MNN refinement on the scanpy
    /// test's run: `rank_genes_groups` failed on "S3 ... only one sample")
    /// is dropped; its cell joins the kept subtype it is most assigned to.
    #[test]
    fn single_cell_subtypes_join_their_nearest_subtype() {
        let mut labels = vec![0, 0, 1, 2, 2];
        let mut q = vec![
            0.8, 0.1, 0.1, //
            0.8, 0.1, 0.1, //
            0.2, 0.3, 0.5, // the single cell of subtype 1: nearest kept is 2
            0.1, 0.1, 0.8, //
            0.1, 0.1, 0.8,
        ];
        let (k, sizes) = compact(&mut labels, &mut q, 3);
        assert_eq!((k, sizes), (2, vec![2, 3]));
        assert_eq!(labels, [0, 0, 1, 1, 1]);
        assert_eq!(q.len(), 10);
        // Without soft assignments it joins the largest.
        let mut labels = vec![0, 0, 1, 2, 2, 2];
        let mut empty = vec![];
        assert_eq!(compact(&mut labels, &mut empty, 3), (2, vec![2, 4]));
        assert_eq!(labels, [0, 0, 1, 1, 1, 1]);
        // Only single cells: kept as they are.
        let mut labels = vec![0, 1];
        assert_eq!(compact(&mut labels, &mut vec![], 2), (2, vec![1, 1]));
    }
}
