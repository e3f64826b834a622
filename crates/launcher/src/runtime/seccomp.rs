//! `linux.seccomp` of config.json (the engines' own profiles: podman's, containerd's
//! default) compiled to a classic BPF program here in Rust, no libseccomp: the
//! architecture checked, x32 calls answered with the default action, then one test per
//! named call, in the profile's order, its argument conditions ANDed, the first match's
//! action returned; everything else gets `defaultAction`.
//!
//! Only x86_64 calls are named (see [`super::syscall_numbers`]): a call of another ABI a
//! profile lists (i386 through int 0x80, x32) gets the default action, so a 32-bit
//! program is refused rather than let through unfiltered.

use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompOperator};

use crate::error::LaunchError;
use crate::runtime::syscall_numbers;
use crate::seccomp::bpf::{
    self, AUDIT_ARCH_X86_64, BPF_AND_K, BPF_JEQ_K, BPF_JGE_K, BPF_JGT_K, BPF_LD_W_ABS, BPF_RET_K,
    MAX_INSTRUCTIONS, OFFSET_ARCH, OFFSET_ARGS, OFFSET_NR, RET_ALLOW, RET_ERRNO, RET_KILL_PROCESS,
    RET_KILL_THREAD, RET_LOG, RET_TRACE, RET_TRAP, X32_SYSCALL_BIT,
};

/// A compiled profile, ready for [`SpecFilter::install`].
#[derive(Debug, Clone)]
pub struct SpecFilter {
    program: Vec<libc::sock_filter>,
    flags: libc::c_ulong,
}

/// An instruction whose jump may target the end of its rule, resolved once the rule's
/// length is known.
#[derive(Clone, Copy)]
enum Jump {
    To(u8),
    /// To the instruction that reloads the call number, which ends the rule.
    NextRule,
}

struct Op {
    code: u16,
    jt: Jump,
    jf: Jump,
    k: u32,
}

fn op(code: u16, jt: Jump, jf: Jump, k: u32) -> Op {
    Op { code, jt, jf, k }
}

fn plain(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

impl SpecFilter {
    pub fn compile(profile: &LinuxSeccomp) -> Result<SpecFilter, LaunchError> {
        let invalid = |why: String| LaunchError::Invalid(format!("linux.seccomp: {why}"));
        if !cfg!(target_arch = "x86_64") {
            return Err(invalid(
                "profiles are compiled for x86_64 only; leave linux.seccomp out on this machine"
                    .into(),
            ));
        }
        if profile.listener_path().is_some() {
            return Err(invalid(
                "listenerPath (SCMP_ACT_NOTIFY) is not supported by launch".into(),
            ));
        }
        let default_errno = profile.default_errno_ret().unwrap_or(libc::EPERM as u32);
        let default = action(&profile.default_action(), default_errno).map_err(invalid)?;
        let mut program = vec![
            plain(BPF_LD_W_ABS, OFFSET_ARCH),
            libc::sock_filter {
                code: BPF_JEQ_K,
                jt: 1,
                jf: 0,
                k: AUDIT_ARCH_X86_64,
            },
            plain(BPF_RET_K, default),
            plain(BPF_LD_W_ABS, OFFSET_NR),
            libc::sock_filter {
                code: BPF_JGE_K,
                jt: 0,
                jf: 1,
                k: X32_SYSCALL_BIT,
            },
            plain(BPF_RET_K, default),
        ];
        for rule in profile.syscalls().iter().flatten() {
            let errno = rule.errno_ret().unwrap_or(libc::EPERM as u32);
            let ret = action(&rule.action(), errno).map_err(invalid)?;
            if ret == default {
                continue;
            }
            let mut checks = Vec::new();
            for arg in rule.args().iter().flatten() {
                if arg.index() > 5 {
                    return Err(invalid(format!(
                        "argument index {} is above 5",
                        arg.index()
                    )));
                }
                checks.extend(arg_check(
                    arg.index() as u32,
                    arg.value(),
                    arg.value_two(),
                    arg.op(),
                ));
            }
            for name in rule.names() {
                // A call this kernel ABI does not have (another architecture's) is
                // left out, as libseccomp does.
                let Some(nr) = syscall_numbers::number(name) else {
                    continue;
                };
                emit_rule(&mut program, nr as u32, &checks, ret);
            }
        }
        program.push(plain(BPF_RET_K, default));
        if program.len() > MAX_INSTRUCTIONS {
            return Err(invalid(format!(
                "the profile compiles to {} instructions, above the kernel's {MAX_INSTRUCTIONS}",
                program.len()
            )));
        }
        let mut flags = 0;
        for flag in profile.flags().iter().flatten() {
            let name = serde_json::to_value(flag)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            flags |= match name.as_str() {
                "SECCOMP_FILTER_FLAG_TSYNC" => libc::SECCOMP_FILTER_FLAG_TSYNC,
                "SECCOMP_FILTER_FLAG_LOG" => libc::SECCOMP_FILTER_FLAG_LOG,
                "SECCOMP_FILTER_FLAG_SPEC_ALLOW" => libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
                "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV" => 1 << 5,
                other => return Err(invalid(format!("unknown flag {other}"))),
            };
        }
        Ok(SpecFilter { program, flags })
    }

    /// Installs the filter on the calling thread: with no_new_privs set, or while the
    /// process holds CAP_SYS_ADMIN.
    pub fn install(&self) -> Result<(), LaunchError> {
        bpf::install(&self.program, self.flags)
            .map_err(|e| LaunchError::setup("installing the seccomp filter (linux.seccomp)", e))
    }

    pub fn len(&self) -> usize {
        self.program.len()
    }

    pub fn is_empty(&self) -> bool {
        self.program.is_empty()
    }
}

/// `jeq nr` over the rule's body: its argument checks, the return, and the reload of
/// the call number they clobbered (which a failed check jumps to).
fn emit_rule(program: &mut Vec<libc::sock_filter>, nr: u32, checks: &[Op], ret: u32) {
    if checks.is_empty() {
        program.push(libc::sock_filter {
            code: BPF_JEQ_K,
            jt: 0,
            jf: 1,
            k: nr,
        });
        program.push(plain(BPF_RET_K, ret));
        return;
    }
    let body = checks.len() + 2;
    program.push(libc::sock_filter {
        code: BPF_JEQ_K,
        jt: 0,
        jf: body as u8,
        k: nr,
    });
    // The reload is the body's last instruction, at index `checks.len() + 1` in it.
    let reload = checks.len() + 1;
    for (i, check) in checks.iter().enumerate() {
        let resolve = |jump: Jump| match jump {
            Jump::To(n) => n,
            Jump::NextRule => (reload - i - 1) as u8,
        };
        program.push(libc::sock_filter {
            code: check.code,
            jt: resolve(check.jt),
            jf: resolve(check.jf),
            k: check.k,
        });
    }
    program.push(plain(BPF_RET_K, ret));
    program.push(plain(BPF_LD_W_ABS, OFFSET_NR));
}

/// The checks for one argument condition on 64-bit values, high word first. Each falls
/// through when the condition holds and jumps to the rule's end when it does not.
fn arg_check(
    index: u32,
    value: u64,
    value_two: Option<u64>,
    operator: LinuxSeccompOperator,
) -> Vec<Op> {
    let low = OFFSET_ARGS + 8 * index;
    let high = low + 4;
    let (vhi, vlo) = ((value >> 32) as u32, value as u32);
    let load = |offset| op(BPF_LD_W_ABS, Jump::To(0), Jump::To(0), offset);
    let fail = Jump::NextRule;
    let next = Jump::To(0);
    match operator {
        LinuxSeccompOperator::ScmpCmpEq => vec![
            load(high),
            op(BPF_JEQ_K, next, fail, vhi),
            load(low),
            op(BPF_JEQ_K, next, fail, vlo),
        ],
        LinuxSeccompOperator::ScmpCmpNe => vec![
            load(high),
            op(BPF_JEQ_K, next, Jump::To(2), vhi),
            load(low),
            op(BPF_JEQ_K, fail, next, vlo),
        ],
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            let expected = value_two.unwrap_or(0);
            let (ehi, elo) = ((expected >> 32) as u32, expected as u32);
            vec![
                load(high),
                op(BPF_AND_K, next, next, vhi),
                op(BPF_JEQ_K, next, fail, ehi),
                load(low),
                op(BPF_AND_K, next, next, vlo),
                op(BPF_JEQ_K, next, fail, elo),
            ]
        }
        LinuxSeccompOperator::ScmpCmpGt | LinuxSeccompOperator::ScmpCmpGe => {
            let last = match operator {
                LinuxSeccompOperator::ScmpCmpGt => BPF_JGT_K,
                _ => BPF_JGE_K,
            };
            vec![
                load(high),
                op(BPF_JGT_K, Jump::To(3), next, vhi),
                op(BPF_JEQ_K, next, fail, vhi),
                load(low),
                op(last, next, fail, vlo),
            ]
        }
        LinuxSeccompOperator::ScmpCmpLt | LinuxSeccompOperator::ScmpCmpLe => {
            // a < v is !(a >= v); a <= v is !(a > v).
            let last = match operator {
                LinuxSeccompOperator::ScmpCmpLt => BPF_JGE_K,
                _ => BPF_JGT_K,
            };
            vec![
                load(high),
                op(BPF_JGE_K, next, Jump::To(3), vhi),
                op(BPF_JEQ_K, next, fail, vhi),
                load(low),
                op(last, fail, next, vlo),
            ]
        }
    }
}

fn action(action: &oci_spec::runtime::LinuxSeccompAction, errno: u32) -> Result<u32, String> {
    let name = serde_json::to_value(action)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    Ok(match name.as_str() {
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => RET_KILL_THREAD,
        "SCMP_ACT_KILL_PROCESS" => RET_KILL_PROCESS,
        "SCMP_ACT_TRAP" => RET_TRAP,
        "SCMP_ACT_ERRNO" => RET_ERRNO | (errno & 0xffff),
        "SCMP_ACT_TRACE" => RET_TRACE | (errno & 0xffff),
        "SCMP_ACT_LOG" => RET_LOG,
        "SCMP_ACT_ALLOW" => RET_ALLOW,
        other => return Err(format!("action {other} is not supported by launch")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(json: &str) -> LinuxSeccomp {
        serde_json::from_str(json).unwrap()
    }

    /// Runs the program on one call, as the kernel would.
    fn evaluate(filter: &SpecFilter, nr: u32, args: [u64; 6]) -> u32 {
        bpf::run(&filter.program, AUDIT_ARCH_X86_64, nr, args)
    }

    #[test]
    fn named_calls_get_their_action_and_the_rest_the_default() {
        let filter = SpecFilter::compile(&profile(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":38,
                "syscalls":[{"names":["read","write"],"action":"SCMP_ACT_ALLOW"},
                            {"names":["mkdir"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}"#,
        ))
        .unwrap();
        assert_eq!(evaluate(&filter, libc::SYS_read as u32, [0; 6]), RET_ALLOW);
        assert_eq!(evaluate(&filter, libc::SYS_write as u32, [0; 6]), RET_ALLOW);
        assert_eq!(
            evaluate(&filter, libc::SYS_mkdir as u32, [0; 6]),
            RET_ERRNO | 1
        );
        assert_eq!(
            evaluate(&filter, libc::SYS_open as u32, [0; 6]),
            RET_ERRNO | 38
        );
        assert_eq!(
            evaluate(&filter, libc::SYS_read as u32 | X32_SYSCALL_BIT, [0; 6]),
            RET_ERRNO | 38
        );
    }

    #[test]
    fn argument_conditions_compare_all_64_bits() {
        let filter = SpecFilter::compile(&profile(
            r#"{"defaultAction":"SCMP_ACT_ERRNO",
                "syscalls":[
                  {"names":["personality"],"action":"SCMP_ACT_ALLOW",
                   "args":[{"index":0,"value":8,"op":"SCMP_CMP_EQ"}]},
                  {"names":["clone"],"action":"SCMP_ACT_ALLOW",
                   "args":[{"index":0,"value":2114060288,"valueTwo":0,"op":"SCMP_CMP_MASKED_EQ"}]},
                  {"names":["socket"],"action":"SCMP_ACT_ALLOW",
                   "args":[{"index":0,"value":40,"op":"SCMP_CMP_NE"}]},
                  {"names":["kill"],"action":"SCMP_ACT_ALLOW",
                   "args":[{"index":1,"value":4294967296,"op":"SCMP_CMP_LT"}]},
                  {"names":["tkill"],"action":"SCMP_ACT_ALLOW",
                   "args":[{"index":1,"value":10,"op":"SCMP_CMP_GE"},
                           {"index":1,"value":20,"op":"SCMP_CMP_LE"}]}]}"#,
        ))
        .unwrap();
        let eperm = RET_ERRNO | libc::EPERM as u32;
        let call = |nr: i64, args: [u64; 6]| evaluate(&filter, nr as u32, args);
        assert_eq!(call(libc::SYS_personality, [8, 0, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(
            call(libc::SYS_personality, [8 | 1 << 32, 0, 0, 0, 0, 0]),
            eperm
        );
        assert_eq!(
            call(libc::SYS_clone, [libc::SIGCHLD as u64, 0, 0, 0, 0, 0]),
            RET_ALLOW
        );
        let newns = libc::CLONE_NEWNS as u64;
        assert_eq!(call(libc::SYS_clone, [newns, 0, 0, 0, 0, 0]), eperm);
        assert_eq!(call(libc::SYS_socket, [2, 0, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(call(libc::SYS_socket, [40, 0, 0, 0, 0, 0]), eperm);
        assert_eq!(
            call(libc::SYS_socket, [40 | 1 << 32, 0, 0, 0, 0, 0]),
            RET_ALLOW
        );
        assert_eq!(
            call(libc::SYS_kill, [0, u32::MAX as u64, 0, 0, 0, 0]),
            RET_ALLOW
        );
        assert_eq!(call(libc::SYS_kill, [0, 1 << 32, 0, 0, 0, 0]), eperm);
        assert_eq!(call(libc::SYS_tkill, [0, 15, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(call(libc::SYS_tkill, [0, 9, 0, 0, 0, 0]), eperm);
        assert_eq!(call(libc::SYS_tkill, [0, 21, 0, 0, 0, 0]), eperm);
    }

    #[test]
    fn the_engines_profiles_compile() {
        // The shape podman and containerd generate: hundreds of names, a few arguments.
        let names: Vec<String> = syscall_numbers::SYSCALLS
            .iter()
            .map(|(n, _)| format!("\"{n}\""))
            .collect();
        let json = format!(
            r#"{{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":38,"architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86","SCMP_ARCH_X32"],
                "syscalls":[{{"names":[{}],"action":"SCMP_ACT_ALLOW"}},{{"names":["not_a_call_here"],"action":"SCMP_ACT_ALLOW"}}]}}"#,
            names.join(",")
        );
        let filter = SpecFilter::compile(&profile(&json)).unwrap();
        assert!(filter.len() < MAX_INSTRUCTIONS);
        assert!(SpecFilter::compile(&profile(r#"{"defaultAction":"SCMP_ACT_NOTIFY"}"#)).is_err());
    }
}
