//! The host side of a sandbox's network: the network namespace and veth pair `runsc do
//! --network sandbox` creates, a namespace made by someone else (a CNI plugin) adopted instead
//! (`--netns`), and host ports forwarded to the guest (`-p`).

pub mod adopt;
pub mod ethtool;
pub mod forward;
pub mod loopback_forward;
pub mod netns;
pub mod ns_thread;
