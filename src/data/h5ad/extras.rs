//! What `convert` carries from one .h5ad file to another beside X and obs:
//! var columns, obsm, layers and `.raw`; everything else is named so the
//! caller can say it was dropped.

use crate::error::Result;

use super::read::{Node, Reader};
use super::{H5adExtras, RawPart};

impl Reader<'_> {
    /// Reads the extras of an anndata ≥ 0.7 file and lists what it leaves.
    pub fn read_extras(&self) -> Result<(H5adExtras, Vec<String>)> {
        let mut dropped = Vec::new();
        let mut extras = H5adExtras::default();
        let var = self.read_frame("var", true)?;
        let index_name = match self.node("var")? {
            Some(Node::Group(g)) => self.group_attrs(&g, "var")?.get("_index").and_then(hdf5_pure::AttrValue::as_str).unwrap_or("_index").to_string(),
            _ => "_index".to_string(),
        };
        for name in self.member_names("var")? {
            let skip = name == index_name || name == "__categories";
            if !skip && !var.columns.iter().any(|(n, _)| *n == name) {
                dropped.push(format!("var/{name}"));
            }
        }
        extras.var = var.columns;
        for name in self.member_names("obsm")? {
            match self.read_matrix(&format!("obsm/{name}")) {
                Ok(Some(m)) => extras.obsm.push((name, m.to_dense())),
                _ => dropped.push(format!("obsm/{name}")),
            }
        }
        for name in self.member_names("layers")? {
            match self.read_matrix(&format!("layers/{name}")) {
                Ok(Some(m)) => extras.layers.push((name, m)),
                _ => dropped.push(format!("layers/{name}")),
            }
        }
        if self.node("raw/X")?.is_some() {
            let raw = (|| -> Result<Option<RawPart>> {
                let Some(x) = self.read_matrix("raw/X")? else { return Ok(None) };
                let var = self.read_frame("raw/var", true)?;
                Ok((var.index.len() == x.cols()).then_some(RawPart { x, gene_names: var.index, var: var.columns }))
            })();
            match raw {
                Ok(Some(r)) => extras.raw = Some(r),
                _ => dropped.push("raw".into()),
            }
        } else if self.node("raw.X")?.is_some() {
            dropped.push("raw".into());
        }
        for group in ["uns", "varm", "obsp", "varp"] {
            if let Some(Node::Group(_)) = self.node(group)? {
                dropped.extend(self.member_names(group)?.into_iter().map(|n| format!("{group}/{n}")));
            }
        }
        Ok((extras, dropped))
    }
}

