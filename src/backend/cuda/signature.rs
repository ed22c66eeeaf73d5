//! The one reader of kernel signatures in `kernels/*.cu`, shared by
//! build.rs (which includes this file with `#[path]`, so it may use std
//! only) and the crate ([`super::kernels::global_kernels`]).

/// Names of the `__global__` kernels of a source, in order:
/// `__global__ void NAME(`.
pub fn global_kernels(src: &str) -> Vec<&str> {
    globals(src).into_iter().map(|(name, _)| name).collect()
}

/// Each `__global__ void NAME(` of a source: the name and the byte offset
/// of its `(`.
fn globals(src: &str) -> Vec<(&str, usize)> {
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(i) = src[at..].find("__global__") {
        at += i + "__global__".len();
        let rest = &src[at..];
        let Some(t) = rest.trim_start().strip_prefix("void") else { continue };
        let t = t.trim_start();
        let end = t.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(t.len());
        let after = t[end..].trim_start();
        if end > 0 && after.starts_with('(') {
            let open = src.len() - after.len();
            found.push((&t[..end], open));
        }
    }
    found
}

/// One kernel parameter: its type with qualifiers dropped and pointers
/// written `T*` (`const float* __restrict__ x` → `float*`), and its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param<'a> {
    pub ty: String,
    pub name: &'a str,
}

/// The parameters of every `__global__` kernel of a source, in order.
pub fn kernel_params(src: &str) -> Vec<(&str, Vec<Param<'_>>)> {
    globals(src)
        .into_iter()
        .map(|(name, open)| {
            let close = open + src[open..].find(')').unwrap_or(0);
            let params = src[open + 1..close]
                .split(',')
                .map(|p| p.split_whitespace().filter(|w| *w != "const" && *w != "__restrict__").collect::<Vec<_>>())
                .filter(|w| !w.is_empty())
                .map(|w| {
                    // All but the last word is the type; stars may sit on the name.
                    let last = w[w.len() - 1];
                    let ty = w[..w.len() - 1].join(" ");
                    let stars = last.chars().take_while(|&c| c == '*').count();
                    let ty = format!("{}{}", ty.replace([' ', '*'], ""), "*".repeat(ty.matches('*').count() + stars));
                    Param { ty, name: &last[stars..] }
                })
                .collect();
            (name, params)
        })
        .collect()
}

/// How a parameter type is passed by a launch stub: the Rust type of the
/// stub's parameter and the `launch::Args` method that packs it; None for
/// a type the stubs cannot carry.
pub fn rust_arg(ty: &str) -> Option<(&'static str, &'static str)> {
    Some(match ty {
        t if t.ends_with('*') => ("DevPtr", "ptr"),
        "int" => ("i32", "i32"),
        "u32" | "unsigned" => ("u32", "u32"),
        "u64" => ("u64", "u64"),
        "float" => ("f32", "f32"),
        "double" => ("f64", "f64"),
        _ => return None,
    })
}
