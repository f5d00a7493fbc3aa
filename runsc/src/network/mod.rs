//! The host side of a sandbox's network: the network namespace and veth pair `runsc do
//! --network sandbox` creates, a namespace made by someone else (a CNI plugin) adopted instead
//! (`--netns`), host ports forwarded to the guest (`-p`), and the requests that warm an app
//! up before `runsc image build` checkpoints it.

pub mod adopt;
pub mod ethtool;
pub mod forward;
pub mod loopback_forward;
pub mod nat;
pub mod netns;
pub mod ns_thread;
pub mod resolver;
pub mod rtnl;
pub mod warm_up;
