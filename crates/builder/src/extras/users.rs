//! Minimal `/etc/passwd` and `/etc/group` (root, nobody, and `--user NAME`), and
//! `/etc/hosts`, so that `id`, `whoami`, `ps -eo user` and `~root` resolve names.
//!
//! A `--user` known to the root's passwd keeps its uid, gid, home and shell there;
//! an unknown name gets the first free uid from 1000 and a group of its own.

use super::{ExtraError, PlanView};
use crate::addition::Addition;
use std::path::Path;

const HOSTS: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";

/// One passwd line's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
struct User {
    name: String,
    uid: u32,
    gid: u32,
    gecos: String,
    home: String,
    shell: String,
}

impl User {
    fn parse(line: &str) -> Option<User> {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() < 7 {
            return None;
        }
        Some(User {
            name: fields[0].to_string(),
            uid: fields[2].parse().ok()?,
            gid: fields[3].parse().ok()?,
            gecos: fields[4].to_string(),
            home: fields[5].to_string(),
            shell: fields[6].to_string(),
        })
    }

    fn line(&self) -> String {
        format!(
            "{}:x:{}:{}:{}:{}:{}\n",
            self.name, self.uid, self.gid, self.gecos, self.home, self.shell
        )
    }
}

/// The group name of `gid` in the root's /etc/group.
fn host_group_name(group_text: &str, gid: u32) -> Option<String> {
    group_text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() >= 3 && fields[2].parse() == Ok(gid)).then(|| fields[0].to_string())
    })
}

/// passwd and group text for root, nobody and `extra` users.
fn passwd_and_group(
    extra: &[String],
    host_passwd: &str,
    host_group: &str,
    shell: &str,
) -> (String, String) {
    let mut users = vec![
        User {
            name: "root".into(),
            uid: 0,
            gid: 0,
            gecos: "root".into(),
            home: "/root".into(),
            shell: shell.into(),
        },
        User {
            name: "nobody".into(),
            uid: 65534,
            gid: 65534,
            gecos: "nobody".into(),
            home: "/nonexistent".into(),
            shell: "/usr/sbin/nologin".into(),
        },
    ];
    let mut groups: Vec<(String, u32)> = vec![("root".into(), 0), ("nogroup".into(), 65534)];
    let known: Vec<User> = host_passwd.lines().filter_map(User::parse).collect();
    for name in extra {
        if users.iter().any(|u| &u.name == name) {
            continue;
        }
        let from_host = known.iter().find(|u| &u.name == name);
        let user = match from_host {
            Some(user) => user.clone(),
            None => {
                let uid = (1000..65534)
                    .find(|id| {
                        !users.iter().any(|u| u.uid == *id) && !groups.iter().any(|g| g.1 == *id)
                    })
                    .unwrap_or(65533);
                User {
                    name: name.clone(),
                    uid,
                    gid: uid,
                    gecos: String::new(),
                    home: format!("/home/{name}"),
                    shell: shell.into(),
                }
            }
        };
        if !groups.iter().any(|g| g.1 == user.gid) {
            // A host user keeps its host group's name; a new user gets a group of its own.
            let host_name = from_host.and_then(|_| host_group_name(host_group, user.gid));
            let group = host_name.unwrap_or_else(|| user.name.clone());
            groups.push((group, user.gid));
        }
        users.push(user);
    }
    let passwd = users.iter().map(User::line).collect();
    let group = groups
        .iter()
        .map(|(name, gid)| format!("{name}:x:{gid}:\n"))
        .collect();
    (passwd, group)
}

/// /etc/passwd, /etc/group, /etc/hosts and root's home directory.
pub fn additions(view: &PlanView, extra: &[String]) -> Result<Vec<Addition>, ExtraError> {
    let read = |path: &str| Ok::<_, ExtraError>(view.read_config(path)?.unwrap_or_default());
    let (host_passwd, host_group) = (read("/etc/passwd")?, read("/etc/group")?);
    // root's shell: a shell in the image if there is one, else the conventional one.
    let shell = ["/bin/bash", "/usr/bin/bash", "/bin/sh", "/usr/bin/sh"]
        .into_iter()
        .find(|s| view.tree.contains(Path::new(s)))
        .unwrap_or("/bin/sh");
    let (passwd, group) = passwd_and_group(extra, &host_passwd, &host_group, shell);
    let reason = "users and groups: root, nobody and --user";
    Ok(vec![
        Addition::generated("/etc/passwd", passwd.into_bytes(), 0o644, reason),
        Addition::generated("/etc/group", group.into_bytes(), 0o644, reason),
        Addition::generated(
            "/etc/hosts",
            HOSTS.as_bytes().to_vec(),
            0o644,
            "host names: localhost",
        ),
        Addition::directory("/root", 0o700, "root's home directory"),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_known_to_the_host_keep_their_ids_and_new_ones_get_free_ids() {
        let host = "alice:x:1001:1001:Alice:/home/alice:/bin/zsh\n";
        let groups = "staff:x:1001:\nother:x:1000:\n";
        let extra = vec!["alice".to_string(), "bob".to_string()];
        let (passwd, group) = passwd_and_group(&extra, host, groups, "/bin/bash");
        assert_eq!(
            passwd,
            "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
             alice:x:1001:1001:Alice:/home/alice:/bin/zsh\nbob:x:1000:1000::/home/bob:/bin/bash\n"
        );
        assert_eq!(
            group,
            "root:x:0:\nnogroup:x:65534:\nstaff:x:1001:\nbob:x:1000:\n"
        );
    }
}
