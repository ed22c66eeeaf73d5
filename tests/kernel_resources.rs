//! The committed register/spill/shared-memory table of the CUDA kernels
//! (kernels/resources.tsv, written by scripts/kernel_report.py):
//! - always: every `__global__` kernel of kernels/*.cu has a row for sm_80
//!   and sm_90, no row is stale, and no kernel spills registers;
//! - when ACSLEUTH_NVRTC_LIB names libnvrtc (CI installs NVIDIA's NVRTC
//!   wheel and sets it): every kernel is recompiled for both arches with
//!   `-Xptxas=-v` and the table must be current (when the NVRTC version is
//!   the one that wrote it; registers differ between versions).

use std::collections::BTreeMap;
use std::path::PathBuf;

use acsleuth::backend::cuda::kernels::global_kernels;

const ARCHES: [&str; 2] = ["sm_80", "sm_90"];

fn kdir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("kernels")
}

/// `(file name, source)` of every kernels/*.cu, sorted by name.
fn cu_files() -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = std::fs::read_dir(kdir())
        .expect("kernels/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cu"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).expect("read kernel"))
        })
        .collect();
    v.sort();
    v
}

/// One row: registers, spill stores, spill loads, static shared bytes.
type Row = [u64; 4];

struct Table {
    version: String,
    rows: BTreeMap<(String, String), Row>,
}

fn parse_table(text: &str) -> Table {
    let mut lines = text.lines();
    let version = lines
        .next()
        .and_then(|l| l.strip_prefix("# nvrtc "))
        .expect("resources.tsv: first line `# nvrtc X.Y`")
        .to_string();
    assert_eq!(
        lines.next(),
        Some("kernel\tarch\tregisters\tspill_stores\tspill_loads\tshared_bytes"),
        "resources.tsv: header"
    );
    let mut rows = BTreeMap::new();
    for (i, l) in lines.enumerate() {
        let f: Vec<&str> = l.split('\t').collect();
        assert_eq!(f.len(), 6, "resources.tsv line {}: {l:?}", i + 3);
        let num = |s: &str| s.parse::<u64>().unwrap_or_else(|_| panic!("resources.tsv line {}: {s:?}", i + 3));
        rows.insert((f[0].to_string(), f[1].to_string()), [num(f[2]), num(f[3]), num(f[4]), num(f[5])]);
    }
    Table { version, rows }
}

fn render(version: &str, rows: &BTreeMap<(String, String), Row>) -> String {
    let mut s = format!("# nvrtc {version}\nkernel\tarch\tregisters\tspill_stores\tspill_loads\tshared_bytes\n");
    for ((k, a), r) in rows {
        s += &format!("{k}\t{a}\t{}\t{}\t{}\t{}\n", r[0], r[1], r[2], r[3]);
    }
    s
}

fn committed() -> (String, Table) {
    let text = std::fs::read_to_string(kdir().join("resources.tsv")).expect("kernels/resources.tsv is committed");
    let t = parse_table(&text);
    (text, t)
}

#[test]
fn table_covers_every_kernel_without_spills() {
    let (_, table) = committed();
    let mut expected = Vec::new();
    for (file, src) in cu_files() {
        for k in global_kernels(&src) {
            for arch in ARCHES {
                let row = table.rows.get(&(k.to_string(), arch.to_string()));
                let row = row.unwrap_or_else(|| {
                    panic!("{file}: kernel {k} has no {arch} row in kernels/resources.tsv (run scripts/kernel_report.py)")
                });
                assert!(row[1] == 0 && row[2] == 0, "{k} on {arch} spills registers: {row:?}");
                expected.push((k.to_string(), arch.to_string()));
            }
        }
    }
    for key in table.rows.keys() {
        assert!(expected.contains(key), "stale row in kernels/resources.tsv: {key:?}");
    }
}

#[cfg(target_os = "linux")]
mod nvrtc {
    use std::ffi::{c_char, c_int, c_void, CStr, CString};

    unsafe extern "C" {
        fn dlopen(filename: *const c_char, flag: c_int) -> *mut c_void;
        fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
        fn dlerror() -> *const c_char;
    }
    const RTLD_NOW: c_int = 2;

    type Version = unsafe extern "C" fn(*mut c_int, *mut c_int) -> c_int;
    type Create = unsafe extern "C" fn(
        *mut *mut c_void,
        *const c_char,
        *const c_char,
        c_int,
        *const *const c_char,
        *const *const c_char,
    ) -> c_int;
    type Compile = unsafe extern "C" fn(*mut c_void, c_int, *const *const c_char) -> c_int;
    type LogSize = unsafe extern "C" fn(*mut c_void, *mut usize) -> c_int;
    type Log = unsafe extern "C" fn(*mut c_void, *mut c_char) -> c_int;
    type Destroy = unsafe extern "C" fn(*mut *mut c_void) -> c_int;

    /// The few NVRTC entry points the report needs, loaded at run time.
    pub struct Nvrtc {
        version: Version,
        create: Create,
        compile: Compile,
        log_size: LogSize,
        log: Log,
        destroy: Destroy,
    }

    impl Nvrtc {
        pub fn load(path: &str) -> Result<Nvrtc, String> {
            let c = CString::new(path).map_err(|e| e.to_string())?;
            // SAFETY: dlopen/dlsym with NUL-terminated names; each symbol is
            // cast to its documented NVRTC signature.
            unsafe {
                let h = dlopen(c.as_ptr(), RTLD_NOW);
                if h.is_null() {
                    return Err(CStr::from_ptr(dlerror()).to_string_lossy().into_owned());
                }
                let sym = |name: &str| -> Result<*mut c_void, String> {
                    let n = CString::new(name).unwrap();
                    let p = dlsym(h, n.as_ptr());
                    if p.is_null() { Err(format!("{path} has no {name}")) } else { Ok(p) }
                };
                Ok(Nvrtc {
                    version: std::mem::transmute::<*mut c_void, Version>(sym("nvrtcVersion")?),
                    create: std::mem::transmute::<*mut c_void, Create>(sym("nvrtcCreateProgram")?),
                    compile: std::mem::transmute::<*mut c_void, Compile>(sym("nvrtcCompileProgram")?),
                    log_size: std::mem::transmute::<*mut c_void, LogSize>(sym("nvrtcGetProgramLogSize")?),
                    log: std::mem::transmute::<*mut c_void, Log>(sym("nvrtcGetProgramLog")?),
                    destroy: std::mem::transmute::<*mut c_void, Destroy>(sym("nvrtcDestroyProgram")?),
                })
            }
        }

        pub fn version(&self) -> String {
            let (mut a, mut b) = (0, 0);
            // SAFETY: two out-parameters.
            unsafe { (self.version)(&mut a, &mut b) };
            format!("{a}.{b}")
        }

        /// Compile `src` to SASS for `arch` with the same options as
        /// scripts/kernel_report.py; returns the log (ptxas -v report).
        pub fn compile_log(&self, src: &str, name: &str, arch: &str, include: &str) -> Result<String, String> {
            let src = CString::new(src).unwrap();
            let cname = CString::new(name).unwrap();
            let opts: Vec<CString> = [
                format!("--gpu-architecture={arch}"),
                "-Xptxas=-v".into(),
                format!("--include-path={include}"),
                "--std=c++17".into(),
            ]
            .into_iter()
            .map(|o| CString::new(o).unwrap())
            .collect();
            let ptrs: Vec<*const c_char> = opts.iter().map(|o| o.as_ptr()).collect();
            let mut prog: *mut c_void = std::ptr::null_mut();
            // SAFETY: NVRTC's C API with live NUL-terminated strings; the
            // program is destroyed before returning.
            unsafe {
                let rc = (self.create)(&mut prog, src.as_ptr(), cname.as_ptr(), 0, std::ptr::null(), std::ptr::null());
                if rc != 0 {
                    return Err(format!("nvrtcCreateProgram({name}) = {rc}"));
                }
                let rc = (self.compile)(prog, ptrs.len() as c_int, ptrs.as_ptr());
                let mut n = 0usize;
                (self.log_size)(prog, &mut n);
                let mut buf = vec![0u8; n.max(1)];
                (self.log)(prog, buf.as_mut_ptr().cast());
                (self.destroy)(&mut prog);
                let log = String::from_utf8_lossy(&buf[..buf.iter().position(|&b| b == 0).unwrap_or(buf.len())]).into_owned();
                if rc != 0 {
                    return Err(format!("{name} for {arch} does not compile:\n{log}"));
                }
                Ok(log)
            }
        }
    }
}

/// ptxas -v log → kernel → row (as scripts/kernel_report.py parses it).
fn parse_log(log: &str) -> BTreeMap<String, Row> {
    let mut out: BTreeMap<String, Row> = BTreeMap::new();
    let mut cur: Option<String> = None;
    let num_before = |line: &str, tag: &str| -> Option<u64> {
        let i = line.find(tag)?;
        line[..i].trim_end().rsplit(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
    };
    for line in log.lines() {
        if let Some(i) = line.find("Compiling entry function '") {
            let rest = &line[i + "Compiling entry function '".len()..];
            let name = rest.split('\'').next().unwrap_or("").to_string();
            out.insert(name.clone(), [0; 4]);
            cur = Some(name);
            continue;
        }
        let Some(k) = &cur else { continue };
        let row = out.get_mut(k).unwrap();
        if let (Some(st), Some(ld)) = (num_before(line, " bytes spill stores"), num_before(line, " bytes spill loads")) {
            row[1] = st;
            row[2] = ld;
        }
        if let Some(r) = num_before(line, " registers") {
            row[0] = r;
            row[3] = num_before(line, " bytes smem").unwrap_or(0);
        }
    }
    out
}

#[test]
fn table_is_current_with_nvrtc() {
    let Ok(lib) = std::env::var("ACSLEUTH_NVRTC_LIB") else {
        if let Ok(why) = std::env::var("ACSLEUTH_NVRTC_UNAVAILABLE") {
            eprintln!("WARNING: kernel recompilation skipped: {why}");
        }
        return;
    };
    #[cfg(not(target_os = "linux"))]
    panic!("ACSLEUTH_NVRTC_LIB={lib}: the NVRTC check runs on Linux only");
    #[cfg(target_os = "linux")]
    {
        let nv = nvrtc::Nvrtc::load(&lib).unwrap_or_else(|e| panic!("ACSLEUTH_NVRTC_LIB={lib} cannot be loaded: {e}"));
        let include = kdir().to_string_lossy().into_owned();
        let mut rows = BTreeMap::new();
        for (file, src) in cu_files() {
            for arch in ARCHES {
                let log = nv.compile_log(&src, &file, arch, &include).unwrap_or_else(|e| panic!("{e}"));
                let parsed = parse_log(&log);
                for k in global_kernels(&src) {
                    let r = parsed.get(k).unwrap_or_else(|| panic!("{file}: no ptxas report for {k} on {arch}:\n{log}"));
                    assert!(r[1] == 0 && r[2] == 0, "{k} on {arch} spills registers: {r:?}");
                    rows.insert((k.to_string(), arch.to_string()), *r);
                }
            }
        }
        let (text, table) = committed();
        let fresh = render(&nv.version(), &rows);
        if nv.version() == table.version {
            assert_eq!(text, fresh, "kernels/resources.tsv is out of date: rerun scripts/kernel_report.py");
        } else {
            eprintln!(
                "NOTE: NVRTC {} differs from the table's {}; compared coverage and spills only",
                nv.version(),
                table.version
            );
        }
    }
}
