//! `--ulimit NAME=SOFT[:HARD]`: lowers a resource limit of the container's processes.
//! Never raises one: raising a hard limit needs CAP_SYS_RESOURCE, which a container must
//! not have, and a soft limit above the hard one is meaningless. A raise is refused with
//! one line before anything starts.

use crate::error::LaunchError;

/// One `--ulimit`, checked against the launcher's own limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ulimit {
    pub resource: libc::__rlimit_resource_t,
    pub soft: libc::rlim_t,
    pub hard: libc::rlim_t,
}

/// The names docker takes, and their resources.
const RESOURCES: [(&str, libc::__rlimit_resource_t); 15] = [
    ("core", libc::RLIMIT_CORE),
    ("cpu", libc::RLIMIT_CPU),
    ("data", libc::RLIMIT_DATA),
    ("fsize", libc::RLIMIT_FSIZE),
    ("locks", libc::RLIMIT_LOCKS),
    ("memlock", libc::RLIMIT_MEMLOCK),
    ("msgqueue", libc::RLIMIT_MSGQUEUE),
    ("nice", libc::RLIMIT_NICE),
    ("nofile", libc::RLIMIT_NOFILE),
    ("nproc", libc::RLIMIT_NPROC),
    ("rss", libc::RLIMIT_RSS),
    ("rtprio", libc::RLIMIT_RTPRIO),
    ("rttime", libc::RLIMIT_RTTIME),
    ("sigpending", libc::RLIMIT_SIGPENDING),
    ("stack", libc::RLIMIT_STACK),
];

impl std::str::FromStr for Ulimit {
    type Err = LaunchError;

    fn from_str(spec: &str) -> Result<Ulimit, LaunchError> {
        let invalid = |why: String| LaunchError::Invalid(format!("--ulimit {spec}: {why}"));
        let (name, values) = spec
            .split_once('=')
            .ok_or_else(|| invalid("give NAME=SOFT[:HARD], e.g. nofile=1024:2048".into()))?;
        let resource = RESOURCES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, r)| *r)
            .ok_or_else(|| {
                let names: Vec<&str> = RESOURCES.iter().map(|(n, _)| *n).collect();
                invalid(format!("unknown limit; give one of {}", names.join(", ")))
            })?;
        let value = |text: &str| match text {
            "unlimited" | "-1" => Ok(libc::RLIM_INFINITY),
            _ => text
                .parse::<libc::rlim_t>()
                .map_err(|_| invalid(format!("{text:?} is not a number or `unlimited`"))),
        };
        let current = current(resource);
        // SOFT alone keeps the current hard limit.
        let (soft, hard) = match values.split_once(':') {
            Some((soft, hard)) => (value(soft)?, value(hard)?),
            None => (value(values)?, current.rlim_max),
        };
        if soft > hard {
            return Err(invalid(format!(
                "the soft limit is above the hard limit ({}); give at most that",
                show(hard)
            )));
        }
        if hard > current.rlim_max {
            return Err(invalid(format!(
                "raises the hard limit (now {}); --ulimit can only lower limits",
                show(current.rlim_max)
            )));
        }
        Ok(Ulimit {
            resource,
            soft,
            hard,
        })
    }
}

impl Ulimit {
    /// Sets the limit on this process (inherited by everything it starts).
    pub fn apply(&self) -> Result<(), LaunchError> {
        let limit = libc::rlimit {
            rlim_cur: self.soft,
            rlim_max: self.hard,
        };
        // SAFETY: valid rlimit.
        if unsafe { libc::setrlimit(self.resource, &limit) } < 0 {
            return Err(LaunchError::setup(
                "setting a --ulimit",
                std::io::Error::last_os_error(),
            ));
        }
        Ok(())
    }
}

fn current(resource: libc::__rlimit_resource_t) -> libc::rlimit {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid rlimit; getrlimit cannot fail for a known resource.
    unsafe { libc::getrlimit(resource, &mut limit) };
    limit
}

fn show(value: libc::rlim_t) -> String {
    if value == libc::RLIM_INFINITY {
        "unlimited".to_string()
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_and_only_lower() {
        let hard = current(libc::RLIMIT_NOFILE).rlim_max;
        let u: Ulimit = "nofile=64:128".parse().unwrap();
        assert_eq!((u.soft, u.hard), (64, 128));
        let u: Ulimit = "nofile=64".parse().unwrap();
        assert_eq!((u.soft, u.hard), (64, hard));
        if hard != libc::RLIM_INFINITY {
            assert!(format!("nofile=1:{}", hard + 1).parse::<Ulimit>().is_err());
        }
        assert!("nofile=10:5".parse::<Ulimit>().is_err());
        assert!("files=10".parse::<Ulimit>().is_err());
        assert!("nofile".parse::<Ulimit>().is_err());
    }
}
