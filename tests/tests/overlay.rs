//! The overlay over the host's files, as tools that walk and remove trees meet it: a
//! tree made on the host before the sandbox starts is removed with `rm -rf` and
//! `find -delete`, and a directory keeps its inode number when a change deeper down
//! copies it into the overlay. The same script runs natively (on its own copy of the
//! tree) and sandboxed; the outputs must match.

use std::path::{Path, PathBuf};

use nanovisor_tests::{assert_same_outcome, run_native, run_sandboxed};

const SCRIPT: &str = r#"
cd "$1" || exit 2
before=$(stat -c %i keep)
touch keep/a/b/c/d/e/f/new
after=$(stat -c %i keep)
[ "$before" = "$after" ] && echo "a directory keeps its inode: yes" || echo "a directory keeps its inode: no"
[ "$(stat -c %i keep/a)" = "$(cd keep/a/b && stat -c %i ..)" ] && echo "its .. agrees: yes" || echo "its .. agrees: no"
rm -rf rm-tree && echo "rm -rf: done"
[ -e rm-tree ] && echo "rm-tree is still there" || echo "rm-tree is gone"
find find-tree -delete && echo "find -delete: done"
[ -e find-tree ] && echo "find-tree is still there" || echo "find-tree is gone"
rm -r keep/a/b/c/d/e/f && echo "rm -r of a subtree: done"
ls keep/a/b/c/d/e
"#;

/// A tree of `depth` nested directories under `root/name`, a file at each level.
fn make_tree(root: &Path, name: &str, depth: usize) {
    let mut dir = root.join(name);
    for level in 0..depth {
        dir = dir.join(["a", "b", "c", "d", "e", "f", "g", "h"][level % 8]);
        std::fs::create_dir_all(&dir).expect("making the tree");
        std::fs::write(dir.join(format!("file{level}")), b"x").expect("a file in the tree");
    }
}

fn fixture(tag: &str) -> PathBuf {
    let root = PathBuf::from(format!("/tmp/nv-overlay-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    for name in ["keep", "rm-tree", "find-tree"] {
        make_tree(&root, name, 8);
    }
    root
}

#[test]
fn host_trees_are_removed_and_keep_their_identity() {
    let native_root = fixture("native");
    let sandbox_root = fixture("sandbox");
    let sh = Path::new("/bin/sh");
    let native = run_native(sh, &["-c", SCRIPT, "sh", &native_root.to_string_lossy()]);
    let sandboxed = run_sandboxed(
        Path::new("/"),
        sh,
        &["-c", SCRIPT, "sh", &sandbox_root.to_string_lossy()],
    );
    assert_eq!(native.status, 0, "{}", native.stderr_str());
    assert_same_outcome("overlay trees", &native, &sandboxed);
    // The sandbox's removals stayed in the sandbox.
    assert!(sandbox_root.join("rm-tree/a/b/c/d/e/f/g/h/file7").is_file());
    let _ = std::fs::remove_dir_all(&native_root);
    let _ = std::fs::remove_dir_all(&sandbox_root);
}
