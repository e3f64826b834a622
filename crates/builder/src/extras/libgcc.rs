//! `libgcc_s.so.1`: glibc loads it at run time to unwind a thread's stack when the
//! thread calls `pthread_exit` or is cancelled (`pthread_cancel`), and for
//! `backtrace`. No DT_NEEDED names it, so a program that reaches those calls dies
//! with "libgcc_s.so.1 must be installed for pthread_exit to work" unless it is there.

use super::{find_beside_libc, loaded_objects, shown};
use crate::plan::{PlanError, Planner};
use crate::symbols::SymbolCache;

/// The libc calls that make glibc dlopen `libgcc_s.so.1`.
const LOADS_LIBGCC: &[&str] = &["pthread_exit", "pthread_cancel", "backtrace"];

const LIBGCC: &str = "libgcc_s.so.1";

pub fn add(planner: &mut Planner, symbols: &mut SymbolCache) -> Result<(), PlanError> {
    let objects = loaded_objects(planner);
    let Some((importer, call)) = symbols.first_importer(&objects, LOADS_LIBGCC) else {
        return Ok(());
    };
    let Some(library) = find_beside_libc(planner, LIBGCC) else {
        return Ok(());
    };
    let reason = format!(
        "{LIBGCC}: loaded by libc for {call} in {}",
        shown(planner, &importer)
    );
    planner.resolve_and_copy(&library, &reason)?;
    Ok(())
}
