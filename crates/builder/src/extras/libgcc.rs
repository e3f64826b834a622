//! `libgcc_s.so.1`: glibc loads it at run time to unwind a thread's stack when the
//! thread calls `pthread_exit` or is cancelled (`pthread_cancel`), and for
//! `backtrace`. No DT_NEEDED names it, so a program that reaches those calls dies
//! with "libgcc_s.so.1 must be installed for pthread_exit to work" unless it is there.

use super::PlanView;
use crate::addition::Addition;
use crate::symbols::SymbolCache;

/// The libc calls that make glibc dlopen `libgcc_s.so.1`.
const LOADS_LIBGCC: &[&str] = &["pthread_exit", "pthread_cancel", "backtrace"];

const LIBGCC: &str = "libgcc_s.so.1";

/// `libgcc_s.so.1`, when a loaded object calls what makes libc load it.
pub fn additions(view: &PlanView, symbols: &mut SymbolCache) -> Vec<Addition> {
    let objects = view.loaded_objects();
    let Some((importer, call)) = symbols.first_importer(&objects, LOADS_LIBGCC) else {
        return Vec::new();
    };
    let Some(library) = view.find_beside_libc(LIBGCC) else {
        return Vec::new();
    };
    let reason = format!(
        "{LIBGCC}: loaded by libc for {call} in {}",
        view.shown(&importer)
    );
    vec![Addition::elf(library, reason)]
}
