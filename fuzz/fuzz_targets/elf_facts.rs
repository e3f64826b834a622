//! The ELF reader on arbitrary bytes: errors are fine, panics and huge allocations are not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mkroot_builder::elf::ElfFacts;

fuzz_target!(|data: &[u8]| {
    if let Ok(facts) = ElfFacts::parse(data) {
        let _ = (facts.is_static(), facts.nodeflib(), facts.effective_rpath());
    }
});
