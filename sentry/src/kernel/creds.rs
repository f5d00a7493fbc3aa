//! A task's credentials and the rules for changing them (credentials(7), setresuid(2)):
//! real, effective and saved ids, and supplementary groups. Root (effective uid 0) holds
//! CAP_SETUID and CAP_SETGID, as every capability; anyone else may only move between the
//! ids they already hold.

use crate::abi::Errno;

/// Most supplementary groups a task may have (Linux's NGROUPS_MAX).
pub const NGROUPS_MAX: usize = 65536;

/// Credentials of a task.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Credentials {
    pub uid: u32,
    pub euid: u32,
    pub suid: u32,
    pub gid: u32,
    pub egid: u32,
    pub sgid: u32,
    /// Supplementary groups, sorted (Linux keeps them so; getgroups reports that order).
    pub groups: Vec<u32>,
}

/// "Leave this id as it is" in setre*id and setres*id.
const UNCHANGED: u32 = u32::MAX;

/// One kind of id (user or group): real, effective, saved.
struct Ids<'a> {
    real: &'a mut u32,
    effective: &'a mut u32,
    saved: &'a mut u32,
}

impl Ids<'_> {
    fn held(&self, id: u32) -> bool {
        id == *self.real || id == *self.effective || id == *self.saved
    }

    /// setuid/setgid: a privileged caller sets all three; another may set the effective
    /// id to its real or saved one.
    fn set(&mut self, id: u32, privileged: bool) -> Result<(), Errno> {
        if privileged {
            (*self.real, *self.effective, *self.saved) = (id, id, id);
        } else if id == *self.real || id == *self.saved {
            *self.effective = id;
        } else {
            return Err(Errno::EPERM);
        }
        Ok(())
    }

    /// setreuid/setregid.
    fn set_re(&mut self, real: u32, effective: u32, privileged: bool) -> Result<(), Errno> {
        if !privileged {
            if real != UNCHANGED && real != *self.real && real != *self.effective {
                return Err(Errno::EPERM);
            }
            if effective != UNCHANGED && !self.held(effective) {
                return Err(Errno::EPERM);
            }
        }
        let old_real = *self.real;
        if real != UNCHANGED {
            *self.real = real;
        }
        if effective != UNCHANGED {
            *self.effective = effective;
        }
        // The saved id follows the effective one when the real one is set, or the
        // effective one set to something other than the old real one.
        if real != UNCHANGED || (effective != UNCHANGED && effective != old_real) {
            *self.saved = *self.effective;
        }
        Ok(())
    }

    /// setresuid/setresgid.
    fn set_res(&mut self, ids: [u32; 3], privileged: bool) -> Result<(), Errno> {
        if !privileged && ids.iter().any(|id| *id != UNCHANGED && !self.held(*id)) {
            return Err(Errno::EPERM);
        }
        for (slot, id) in [&mut *self.real, &mut *self.effective, &mut *self.saved]
            .into_iter()
            .zip(ids)
        {
            if id != UNCHANGED {
                *slot = id;
            }
        }
        Ok(())
    }
}

impl Credentials {
    /// A task's first credentials: `uid`/`gid` for all three, and `groups`.
    pub fn new(uid: u32, gid: u32, mut groups: Vec<u32>) -> Credentials {
        groups.truncate(NGROUPS_MAX);
        groups.sort_unstable();
        Credentials {
            uid,
            euid: uid,
            suid: uid,
            gid,
            egid: gid,
            sgid: gid,
            groups,
        }
    }

    fn privileged(&self) -> bool {
        self.euid == 0
    }

    fn users(&mut self) -> Ids<'_> {
        Ids {
            real: &mut self.uid,
            effective: &mut self.euid,
            saved: &mut self.suid,
        }
    }

    fn group_ids(&mut self) -> Ids<'_> {
        Ids {
            real: &mut self.gid,
            effective: &mut self.egid,
            saved: &mut self.sgid,
        }
    }

    pub fn setuid(&mut self, uid: u32) -> Result<(), Errno> {
        let p = self.privileged();
        self.users().set(uid, p)
    }

    pub fn setgid(&mut self, gid: u32) -> Result<(), Errno> {
        let p = self.privileged();
        self.group_ids().set(gid, p)
    }

    pub fn setreuid(&mut self, real: u32, effective: u32) -> Result<(), Errno> {
        let p = self.privileged();
        self.users().set_re(real, effective, p)
    }

    pub fn setregid(&mut self, real: u32, effective: u32) -> Result<(), Errno> {
        let p = self.privileged();
        self.group_ids().set_re(real, effective, p)
    }

    pub fn setresuid(&mut self, ids: [u32; 3]) -> Result<(), Errno> {
        let p = self.privileged();
        self.users().set_res(ids, p)
    }

    pub fn setresgid(&mut self, ids: [u32; 3]) -> Result<(), Errno> {
        let p = self.privileged();
        self.group_ids().set_res(ids, p)
    }

    /// Whether setgroups is allowed (it is checked before the list is even read).
    pub fn may_set_groups(&self) -> bool {
        self.privileged()
    }

    /// setgroups: root only.
    pub fn setgroups(&mut self, mut groups: Vec<u32>) -> Result<(), Errno> {
        if !self.may_set_groups() {
            return Err(Errno::EPERM);
        }
        if groups.len() > NGROUPS_MAX {
            return Err(Errno::EINVAL);
        }
        groups.sort_unstable();
        self.groups = groups;
        Ok(())
    }

    /// Whether the task is in group `gid` (effective or supplementary).
    pub fn in_group(&self, gid: u32) -> bool {
        gid == self.egid || self.groups.binary_search(&gid).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_drops_to_a_user_for_good() {
        let mut c = Credentials::new(0, 0, vec![0]);
        c.setgroups(vec![]).expect("root sets groups");
        c.setgid(1000).expect("root sets gid");
        c.setuid(1000).expect("root sets uid");
        assert_eq!((c.uid, c.euid, c.suid), (1000, 1000, 1000));
        assert_eq!((c.gid, c.egid, c.sgid), (1000, 1000, 1000));
        // No way back.
        assert_eq!(c.setuid(0), Err(Errno::EPERM));
        assert_eq!(c.setresuid([0, UNCHANGED, UNCHANGED]), Err(Errno::EPERM));
        assert_eq!(c.setgroups(vec![0]), Err(Errno::EPERM));
    }

    #[test]
    fn a_saved_id_lets_the_effective_one_come_back() {
        let mut c = Credentials::new(0, 0, vec![]);
        // Effective 1000, real and saved stay 0 (a temporary drop).
        c.setresuid([UNCHANGED, 1000, UNCHANGED]).expect("drop");
        assert_eq!((c.uid, c.euid, c.suid), (0, 1000, 0));
        // Unprivileged now, but 0 is held as real and saved.
        c.setuid(0).expect("regain");
        assert_eq!(c.euid, 0);
        // setreuid: setting the real id moves the saved one to the new effective one.
        c.setreuid(1000, 1000).expect("root");
        assert_eq!((c.uid, c.euid, c.suid), (1000, 1000, 1000));
        assert_eq!(c.setreuid(UNCHANGED, 0), Err(Errno::EPERM));
    }

    #[test]
    fn unprivileged_setreuid_swaps_real_and_effective() {
        let mut c = Credentials::new(1000, 1000, vec![]);
        c.setresuid([1000, 2000, 3000]).expect_err("not held");
        let mut c = Credentials {
            euid: 2000,
            suid: 2000,
            ..Credentials::new(1000, 1000, vec![])
        };
        c.setreuid(2000, 1000).expect("swap");
        assert_eq!((c.uid, c.euid, c.suid), (2000, 1000, 1000));
        assert_eq!(c.setreuid(3000, UNCHANGED), Err(Errno::EPERM));
    }

    #[test]
    fn groups_are_kept_sorted_and_bounded() {
        let mut c = Credentials::new(0, 0, vec![30, 10, 20]);
        assert_eq!(c.groups, vec![10, 20, 30]);
        assert!(c.in_group(20) && c.in_group(0) && !c.in_group(40));
        assert_eq!(c.setgroups(vec![0; NGROUPS_MAX + 1]), Err(Errno::EINVAL));
        c.setgroups(vec![5, 1]).expect("set");
        assert_eq!(c.groups, vec![1, 5]);
    }
}
