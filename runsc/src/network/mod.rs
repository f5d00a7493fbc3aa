//! The host side of a sandbox's network: the network namespace and veth pair `runsc do
//! --network sandbox` creates, and host ports forwarded to the guest (`-p`).

pub mod ethtool;
pub mod forward;
pub mod netns;
