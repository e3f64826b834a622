//! Classic BPF for seccomp: the instructions a filter is made of, a small assembler
//! whose jumps name labels (resolved once the program is laid out), and, for tests, an
//! interpreter that runs a program on one `seccomp_data` as the kernel would.
//!
//! Classic BPF jumps only forward, a conditional jump by at most 255 instructions; the
//! assembler refuses a program that would need a longer one.

/// `seccomp_data`'s fields, as offsets a load reads.
pub const OFFSET_NR: u32 = 0;
pub const OFFSET_ARCH: u32 = 4;
/// The first argument's low word; argument `i`'s is 8 bytes further per index, and
/// its high word 4 bytes after its low one (x86_64 is little-endian).
pub const OFFSET_ARGS: u32 = 16;

pub const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
pub const AUDIT_ARCH_I386: u32 = 0x4000_0003;
/// Set in every x32 system call's number.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

pub const RET_KILL_PROCESS: u32 = 0x8000_0000;
pub const RET_KILL_THREAD: u32 = 0;
pub const RET_TRAP: u32 = 0x0003_0000;
pub const RET_ERRNO: u32 = 0x0005_0000;
pub const RET_TRACE: u32 = 0x7ff0_0000;
pub const RET_LOG: u32 = 0x7ffc_0000;
pub const RET_ALLOW: u32 = 0x7fff_0000;

pub const BPF_LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
pub const BPF_JA: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;
pub const BPF_JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
pub const BPF_JGT_K: u16 = (libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K) as u16;
pub const BPF_JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
pub const BPF_JSET_K: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
pub const BPF_AND_K: u16 = (libc::BPF_ALU | libc::BPF_AND | libc::BPF_K) as u16;
pub const BPF_RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

/// The kernel's limit on a program's length.
pub const MAX_INSTRUCTIONS: usize = 4096;

/// A place in a program, to jump to; made by [`Assembler::label`], placed by
/// [`Assembler::place`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label(usize);

/// Where a conditional jump goes: on to the next instruction, or to a label.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    Next,
    To(Label),
}

enum Item {
    Plain(libc::sock_filter),
    Jump {
        code: u16,
        k: u32,
        jt: Target,
        jf: Target,
    },
    Always(Label),
}

/// A program under construction.
#[derive(Default)]
pub struct Assembler {
    items: Vec<Item>,
    /// Each label's instruction index, once placed.
    labels: Vec<Option<usize>>,
}

impl Assembler {
    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Puts `label` at the next instruction.
    pub fn place(&mut self, label: Label) {
        self.labels[label.0] = Some(self.items.len());
    }

    pub fn load(&mut self, offset: u32) {
        self.plain(BPF_LD_W_ABS, offset);
    }

    pub fn ret(&mut self, action: u32) {
        self.plain(BPF_RET_K, action);
    }

    pub fn and(&mut self, mask: u32) {
        self.plain(BPF_AND_K, mask);
    }

    /// `code` (a `BPF_JMP | op | BPF_K`) comparing the accumulator with `k`.
    pub fn jump(&mut self, code: u16, k: u32, jt: Target, jf: Target) {
        self.items.push(Item::Jump { code, k, jt, jf });
    }

    /// An unconditional jump (its offset is 32 bits wide).
    pub fn always(&mut self, to: Label) {
        self.items.push(Item::Always(to));
    }

    fn plain(&mut self, code: u16, k: u32) {
        self.items.push(Item::Plain(libc::sock_filter {
            code,
            jt: 0,
            jf: 0,
            k,
        }));
    }

    /// The program, every label resolved.
    pub fn finish(self) -> Result<Vec<libc::sock_filter>, String> {
        if self.items.len() > MAX_INSTRUCTIONS {
            return Err(format!(
                "{} instructions, above the kernel's {MAX_INSTRUCTIONS}",
                self.items.len()
            ));
        }
        let offset = |at: usize, label: Label| -> Result<usize, String> {
            let to = self.labels[label.0].ok_or("a jump to a label never placed")?;
            to.checked_sub(at + 1)
                .ok_or_else(|| format!("a backward jump at instruction {at}"))
        };
        let short = |at: usize, target: Target| -> Result<u8, String> {
            match target {
                Target::Next => Ok(0),
                Target::To(label) => {
                    let by = offset(at, label)?;
                    u8::try_from(by).map_err(|_| {
                        format!("a jump of {by} instructions at {at}, above BPF's 255")
                    })
                }
            }
        };
        self.items
            .iter()
            .enumerate()
            .map(|(at, item)| match *item {
                Item::Plain(instruction) => Ok(instruction),
                Item::Jump { code, k, jt, jf } => Ok(libc::sock_filter {
                    code,
                    jt: short(at, jt)?,
                    jf: short(at, jf)?,
                    k,
                }),
                Item::Always(to) => Ok(libc::sock_filter {
                    code: BPF_JA,
                    jt: 0,
                    jf: 0,
                    k: offset(at, to)? as u32,
                }),
            })
            .collect()
    }
}

/// Installs `program` as a seccomp filter on the calling thread, with `flags`
/// (`SECCOMP_FILTER_FLAG_*`): with no_new_privs set, or while the thread holds
/// CAP_SYS_ADMIN. Allocation-free.
pub fn install(program: &[libc::sock_filter], flags: libc::c_ulong) -> std::io::Result<()> {
    let program = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: a valid program that outlives the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &program as *const libc::sock_fprog,
        )
    };
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Runs `program` on one call as the kernel's classic BPF would; `args` are the six
/// arguments. Panics on an instruction a seccomp filter may not hold, or one this does
/// not know, so that a test comparing programs cannot pass by accident.
#[cfg(test)]
pub fn run(program: &[libc::sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
    let mut data = [0u32; 16];
    data[0] = nr;
    data[1] = arch;
    // data[2..4] is the instruction pointer, left 0.
    for (i, arg) in args.iter().enumerate() {
        data[4 + 2 * i] = *arg as u32;
        data[5 + 2 * i] = (*arg >> 32) as u32;
    }
    let mut accumulator = 0u32;
    let mut pc = 0usize;
    loop {
        let insn = program[pc];
        pc += 1;
        let jump = |taken: bool| if taken { insn.jt } else { insn.jf } as usize;
        match insn.code {
            BPF_LD_W_ABS => {
                assert!(
                    insn.k.is_multiple_of(4) && insn.k < 64,
                    "load of {}",
                    insn.k
                );
                accumulator = data[insn.k as usize / 4];
            }
            BPF_AND_K => accumulator &= insn.k,
            BPF_JA => pc += insn.k as usize,
            BPF_JEQ_K => pc += jump(accumulator == insn.k),
            BPF_JGT_K => pc += jump(accumulator > insn.k),
            BPF_JGE_K => pc += jump(accumulator >= insn.k),
            BPF_JSET_K => pc += jump(accumulator & insn.k != 0),
            BPF_RET_K => return insn.k,
            code => panic!("instruction {code:#x} at {}", pc - 1),
        }
    }
}

/// The answer of several filters installed one after another, as the kernel combines
/// them: the most restrictive action wins (lowest as a signed number), and of equal
/// ones, that of the filter installed last, which runs first.
#[cfg(test)]
pub fn combined(answers: &[u32]) -> u32 {
    let action = |ret: u32| (ret & 0xffff_0000) as i32;
    let mut best = RET_ALLOW;
    for &answer in answers.iter().rev() {
        if action(answer) < action(best) {
            best = answer;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_resolve_to_forward_offsets() {
        let mut asm = Assembler::default();
        let refuse = asm.label();
        asm.load(OFFSET_NR);
        asm.jump(BPF_JEQ_K, 7, Target::To(refuse), Target::Next);
        asm.ret(RET_ALLOW);
        asm.place(refuse);
        asm.ret(RET_ERRNO | 1);
        let program = asm.finish().unwrap();
        assert_eq!((program[1].jt, program[1].jf), (1, 0));
        assert_eq!(run(&program, AUDIT_ARCH_X86_64, 7, [0; 6]), RET_ERRNO | 1);
        assert_eq!(run(&program, AUDIT_ARCH_X86_64, 8, [0; 6]), RET_ALLOW);
    }

    #[test]
    fn a_jump_too_long_for_bpf_is_refused() {
        let mut asm = Assembler::default();
        let far = asm.label();
        asm.jump(BPF_JEQ_K, 1, Target::To(far), Target::Next);
        for _ in 0..300 {
            asm.ret(RET_ALLOW);
        }
        asm.place(far);
        asm.ret(RET_KILL_PROCESS);
        assert!(asm.finish().unwrap_err().contains("above BPF's 255"));
    }

    #[test]
    fn of_equal_actions_the_last_installed_filter_answers() {
        assert_eq!(combined(&[RET_ERRNO | 1, RET_ERRNO | 38]), RET_ERRNO | 38);
        assert_eq!(
            combined(&[RET_KILL_PROCESS, RET_ERRNO | 38]),
            RET_KILL_PROCESS
        );
        assert_eq!(combined(&[RET_ALLOW, RET_ERRNO | 1]), RET_ERRNO | 1);
    }
}
