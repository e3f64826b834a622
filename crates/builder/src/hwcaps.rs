//! Hardware-capability subdirectories the loader tries under every search directory, in
//! its priority order, decided for this CPU as glibc 2.36 decides them.
//!
//! 1. `glibc-hwcaps/<name>`: on x86-64 the ISA levels x86-64-v4, -v3, -v2 this CPU (and its
//!    kernel, for the AVX register state) supports, best first.
//! 2. Legacy subdirectories (dropped in glibc 2.37, still searched by 2.36): every subset
//!    of the components [hwcap names in bit order..., platform, "tls"], from the full set
//!    down to the empty one (the directory itself), each written last component first.
//!    On x86-64 the hwcap names are "x86_64" (always) and "avx512_1" (Intel with AVX-512
//!    BW/DQ/VL), the platform is AT_PLATFORM ("x86_64"), or "haswell"/"xeon_phi" on Intel
//!    CPUs with those features. So on an AMD CPU: tls/x86_64/x86_64, tls/x86_64 (twice),
//!    tls, x86_64/x86_64, x86_64 (twice), "". `ld.so --help` lists the same facts.

use goblin::elf::header::{EM_386, EM_X86_64};

use crate::elf::ElfClass;

/// Subdirectory lists and the `$PLATFORM` value for one process ABI on this CPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HwCaps {
    /// glibc-hwcaps subdirectory names, best first (`x86-64-v3`).
    pub glibc_hwcaps: Vec<String>,
    /// Legacy subdirectories, best first, the last one empty (the directory itself).
    pub legacy: Vec<String>,
    /// `$PLATFORM` / AT_PLATFORM, when known.
    pub platform: Option<String>,
    /// Legacy hwcap bits the loader accepts in cache entries.
    hwcap_bits: u64,
}

/// Bit 1 of the x86 loader's hwcap word: "x86_64".
const HWCAP_X86_64: u64 = 1 << 1;
/// Bit 2: "avx512_1".
const HWCAP_X86_AVX512_1: u64 = 1 << 2;
/// Bit 0 on i386: "sse2".
const HWCAP_X86_SSE2: u64 = 1 << 0;
/// Cache-entry hwcap bits naming a platform: bit 48 + the platform's index in the x86
/// loader's list (i586, i686, haswell, xeon_phi).
const HWCAP_PLATFORM: u64 = 0xf << 48;
const X86_PLATFORMS: [&str; 4] = ["i586", "i686", "haswell", "xeon_phi"];
/// The old "tls" bit of cache entries.
const HWCAP_TLS: u64 = 1 << 63;

impl HwCaps {
    /// No hardware subdirectories at all: only the directories themselves are searched.
    /// Used for a root whose machine is not this CPU's.
    pub fn baseline() -> HwCaps {
        HwCaps {
            glibc_hwcaps: Vec::new(),
            legacy: vec![String::new()],
            platform: None,
            hwcap_bits: 0,
        }
    }

    /// What the loader of a process with this class and machine uses on this CPU.
    pub fn for_process(class: ElfClass, machine: u16) -> HwCaps {
        match (class, machine) {
            (ElfClass::Elf64, EM_X86_64) => x86::x86_64(),
            (ElfClass::Elf32, EM_386) => x86::i386(),
            _ => HwCaps::baseline(),
        }
    }

    /// Builds the legacy list from its components as glibc's `_dl_important_hwcaps` does.
    fn with_legacy(
        glibc_hwcaps: Vec<String>,
        hwcap_names: &[(&str, u64)],
        platform: &str,
    ) -> HwCaps {
        let mut components: Vec<&str> = hwcap_names.iter().map(|(name, _)| *name).collect();
        components.push(platform);
        components.push("tls");
        let count = components.len();
        let legacy = (0..1u32 << count)
            .rev()
            .map(|mask| {
                (0..count)
                    .rev()
                    .filter(|bit| mask & (1 << bit) != 0)
                    .map(|bit| components[bit])
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .collect();
        HwCaps {
            glibc_hwcaps,
            legacy,
            platform: Some(platform.to_string()),
            hwcap_bits: hwcap_names.iter().fold(0, |bits, (_, bit)| bits | bit),
        }
    }

    /// Every subdirectory to try under one search directory, best first, ending with ""
    /// (the directory itself).
    pub fn subdirectories(&self) -> impl Iterator<Item = String> + '_ {
        self.glibc_hwcaps
            .iter()
            .map(|name| format!("glibc-hwcaps/{name}"))
            .chain(self.legacy.iter().cloned())
    }

    /// Whether a legacy cache entry with these hwcap bits is usable here, as glibc 2.36
    /// decides: no feature bit this CPU lacks, and platform bits, if any, naming this
    /// platform (a platform outside the loader's list, such as "x86_64", matches none).
    pub fn accepts_legacy_cache_hwcap(&self, hwcap: u64) -> bool {
        if hwcap & !(self.hwcap_bits | HWCAP_PLATFORM | HWCAP_TLS) != 0 {
            return false;
        }
        let platform_bits = hwcap & HWCAP_PLATFORM;
        if platform_bits == 0 {
            return true;
        }
        let ours = self
            .platform
            .as_deref()
            .and_then(|p| X86_PLATFORMS.iter().position(|known| *known == p))
            .map(|index| 1u64 << (48 + index));
        ours == Some(platform_bits)
    }

    /// Whether a glibc-hwcaps cache entry marked with x86 ISA level `level` (0: baseline,
    /// 1: v2, 2: v3, 3: v4) may be used: glibc skips it when the CPU lacks that level.
    pub fn supports_isa_level(&self, level: u32) -> bool {
        level == 0
            || self
                .glibc_hwcaps
                .iter()
                .any(|name| *name == format!("x86-64-v{}", level + 1))
    }
}

mod x86 {
    use super::*;

    pub fn x86_64() -> HwCaps {
        let cpu = Cpu::detect();
        let mut hwcap_names = vec![("x86_64", HWCAP_X86_64)];
        let mut platform = "x86_64";
        if cpu.intel {
            if cpu.avx512cd && cpu.avx512er {
                if cpu.avx512pf {
                    platform = "xeon_phi";
                }
            } else if cpu.avx512cd && cpu.avx512bw && cpu.avx512dq && cpu.avx512vl {
                hwcap_names.push(("avx512_1", HWCAP_X86_AVX512_1));
            }
            if platform == "x86_64"
                && cpu.avx2
                && cpu.fma
                && cpu.bmi1
                && cpu.bmi2
                && cpu.lzcnt
                && cpu.movbe
                && cpu.popcnt
            {
                platform = "haswell";
            }
        }
        HwCaps::with_legacy(cpu.isa_levels(), &hwcap_names, platform)
    }

    pub fn i386() -> HwCaps {
        // A 32-bit process on an x86-64 CPU: i686 platform, sse2 always there; glibc 2.36
        // has no glibc-hwcaps subdirectories for i386.
        HwCaps::with_legacy(Vec::new(), &[("sse2", HWCAP_X86_SSE2)], "i686")
    }

    /// The CPU features glibc 2.36 looks at, as "usable" (the kernel saves the registers).
    #[derive(Default)]
    struct Cpu {
        intel: bool,
        cx16: bool,
        lahf: bool,
        popcnt: bool,
        sse3: bool,
        sse4_1: bool,
        sse4_2: bool,
        ssse3: bool,
        avx: bool,
        avx2: bool,
        bmi1: bool,
        bmi2: bool,
        f16c: bool,
        fma: bool,
        lzcnt: bool,
        movbe: bool,
        avx512f: bool,
        avx512bw: bool,
        avx512cd: bool,
        avx512dq: bool,
        avx512vl: bool,
        avx512er: bool,
        avx512pf: bool,
    }

    impl Cpu {
        #[cfg(target_arch = "x86_64")]
        // `__cpuid` is a safe function in newer Rust, unsafe in older ones.
        #[allow(unused_unsafe)]
        fn detect() -> Cpu {
            use std::arch::x86_64::{__cpuid, __cpuid_count};
            // SAFETY: cpuid exists on every x86-64 CPU.
            let vendor = unsafe { __cpuid(0) };
            let extended = unsafe { __cpuid(0x8000_0000) }.eax;
            let ext1 = if extended >= 0x8000_0001 {
                unsafe { __cpuid(0x8000_0001) }.ecx
            } else {
                0
            };
            let intel =
                (vendor.ebx, vendor.edx, vendor.ecx) == (0x756e_6547, 0x4965_6e69, 0x6c65_746e); // "GenuineIntel"
            let leaf7 = if vendor.eax >= 7 {
                unsafe { __cpuid_count(7, 0) }.ebx
            } else {
                0
            };
            let has = |bit: u32| leaf7 & (1 << bit) != 0;
            Cpu {
                intel,
                // LAHF/SAHF in 64-bit mode: CPUID 0x80000001 ECX bit 0.
                lahf: ext1 & 1 != 0,
                cx16: std::arch::is_x86_feature_detected!("cmpxchg16b"),
                popcnt: std::arch::is_x86_feature_detected!("popcnt"),
                sse3: std::arch::is_x86_feature_detected!("sse3"),
                sse4_1: std::arch::is_x86_feature_detected!("sse4.1"),
                sse4_2: std::arch::is_x86_feature_detected!("sse4.2"),
                ssse3: std::arch::is_x86_feature_detected!("ssse3"),
                // These check the OS-enabled register state (XCR0) as glibc does.
                avx: std::arch::is_x86_feature_detected!("avx"),
                avx2: std::arch::is_x86_feature_detected!("avx2"),
                bmi1: std::arch::is_x86_feature_detected!("bmi1"),
                bmi2: std::arch::is_x86_feature_detected!("bmi2"),
                f16c: std::arch::is_x86_feature_detected!("f16c"),
                fma: std::arch::is_x86_feature_detected!("fma"),
                lzcnt: std::arch::is_x86_feature_detected!("lzcnt"),
                movbe: std::arch::is_x86_feature_detected!("movbe"),
                avx512f: std::arch::is_x86_feature_detected!("avx512f"),
                avx512bw: std::arch::is_x86_feature_detected!("avx512bw"),
                avx512cd: std::arch::is_x86_feature_detected!("avx512cd"),
                avx512dq: std::arch::is_x86_feature_detected!("avx512dq"),
                avx512vl: std::arch::is_x86_feature_detected!("avx512vl"),
                // Xeon Phi only; usable when AVX-512 state is (avx512f says so).
                avx512er: std::arch::is_x86_feature_detected!("avx512f") && has(27),
                avx512pf: std::arch::is_x86_feature_detected!("avx512f") && has(26),
            }
        }

        #[cfg(not(target_arch = "x86_64"))]
        fn detect() -> Cpu {
            Cpu::default()
        }

        /// glibc-hwcaps names in priority order (sysdeps/x86/get-isa-level.h): each level
        /// needs the one below it.
        fn isa_levels(&self) -> Vec<String> {
            let v2 = self.cx16
                && self.lahf
                && self.popcnt
                && self.sse3
                && self.sse4_1
                && self.sse4_2
                && self.ssse3;
            let v3 = v2
                && self.avx
                && self.avx2
                && self.bmi1
                && self.bmi2
                && self.f16c
                && self.fma
                && self.lzcnt
                && self.movbe;
            let v4 = v3
                && self.avx512f
                && self.avx512bw
                && self.avx512cd
                && self.avx512dq
                && self.avx512vl;
            [(v4, "x86-64-v4"), (v3, "x86-64-v3"), (v2, "x86-64-v2")]
                .into_iter()
                .filter(|(supported, _)| *supported)
                .map(|(_, name)| name.to_string())
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_order_matches_glibc_for_one_hwcap_and_a_platform() {
        let caps = HwCaps::with_legacy(Vec::new(), &[("x86_64", HWCAP_X86_64)], "x86_64");
        assert_eq!(
            caps.legacy,
            [
                "tls/x86_64/x86_64",
                "tls/x86_64",
                "tls/x86_64",
                "tls",
                "x86_64/x86_64",
                "x86_64",
                "x86_64",
                ""
            ]
        );
    }

    #[test]
    fn legacy_order_with_two_hwcaps_puts_the_platform_before_them() {
        let caps = HwCaps::with_legacy(
            Vec::new(),
            &[("x86_64", HWCAP_X86_64), ("avx512_1", HWCAP_X86_AVX512_1)],
            "haswell",
        );
        assert_eq!(caps.legacy.len(), 16);
        assert_eq!(caps.legacy[0], "tls/haswell/avx512_1/x86_64");
        assert_eq!(caps.legacy[1], "tls/haswell/avx512_1");
        assert_eq!(caps.legacy[7], "tls");
        assert_eq!(caps.legacy[8], "haswell/avx512_1/x86_64");
        assert_eq!(caps.legacy[15], "");
    }

    #[test]
    fn legacy_cache_entries_need_our_features_and_platform() {
        let amd = HwCaps::with_legacy(Vec::new(), &[("x86_64", HWCAP_X86_64)], "x86_64");
        assert!(amd.accepts_legacy_cache_hwcap(0));
        assert!(amd.accepts_legacy_cache_hwcap(HWCAP_X86_64 | HWCAP_TLS));
        assert!(!amd.accepts_legacy_cache_hwcap(HWCAP_X86_AVX512_1));
        // "haswell" is platform index 2; "x86_64" is not in the list: no platform matches.
        assert!(!amd.accepts_legacy_cache_hwcap(1 << 50));
        let intel = HwCaps::with_legacy(Vec::new(), &[("x86_64", HWCAP_X86_64)], "haswell");
        assert!(intel.accepts_legacy_cache_hwcap(1 << 50));
        assert!(!intel.accepts_legacy_cache_hwcap(1 << 51));
    }

    #[test]
    fn isa_levels_need_the_matching_glibc_hwcaps_level() {
        let mut caps = HwCaps::baseline();
        assert!(caps.supports_isa_level(0));
        assert!(!caps.supports_isa_level(1));
        caps.glibc_hwcaps = vec!["x86-64-v3".into(), "x86-64-v2".into()];
        assert!(caps.supports_isa_level(2));
        assert!(!caps.supports_isa_level(3));
    }

    /// The loader prints what it decided for this CPU: compare with it.
    #[test]
    fn host_decision_matches_ld_so_help() {
        let Ok(out) = std::process::Command::new("/lib64/ld-linux-x86-64.so.2")
            .arg("--help")
            .output()
        else {
            return;
        };
        let help = String::from_utf8_lossy(&out.stdout);
        let caps = HwCaps::for_process(ElfClass::Elf64, EM_X86_64);
        let supported: Vec<String> = help
            .lines()
            .filter(|l| l.contains("-v") && l.contains("(supported, searched)"))
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect();
        assert_eq!(caps.glibc_hwcaps, supported, "ld.so --help:\n{help}");
        let platform = help
            .lines()
            .find(|l| l.contains("(AT_PLATFORM; supported, searched)"))
            .and_then(|l| l.split_whitespace().next());
        assert_eq!(caps.platform.as_deref(), platform);
    }
}
