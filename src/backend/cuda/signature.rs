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

/// The parameters of every `__global__` kernel of a source, in order, as
/// `(kernel, [parameter type])` with qualifiers dropped and pointer types
/// written `T*` (`const float* __restrict__ x` → `float*`).
pub fn kernel_params(src: &str) -> Vec<(&str, Vec<String>)> {
    globals(src)
        .into_iter()
        .map(|(name, open)| {
            let close = open + src[open..].find(')').unwrap_or(0);
            let params = src[open + 1..close]
                .split(',')
                .map(|p| p.split_whitespace().filter(|w| *w != "const" && *w != "__restrict__").collect::<Vec<_>>())
                .filter(|w| !w.is_empty())
                .map(|w| {
                    // All but the parameter's name, stars joined to the type.
                    let ty = w[..w.len() - 1].join(" ");
                    let stars = w[w.len() - 1].chars().take_while(|&c| c == '*').count();
                    format!("{}{}", ty.replace(' ', "").replace("*", ""), "*".repeat(ty.matches('*').count() + stars))
                })
                .collect();
            (name, params)
        })
        .collect()
}

/// The `launch::ArgKind` variant a parameter type is passed as, or None
/// for a type the launch arguments cannot carry.
pub fn arg_kind(ty: &str) -> Option<&'static str> {
    Some(match ty {
        t if t.ends_with('*') => "Ptr",
        "int" => "I32",
        "u32" | "unsigned" => "U32",
        "u64" => "U64",
        "float" => "F32",
        "double" => "F64",
        _ => return None,
    })
}
