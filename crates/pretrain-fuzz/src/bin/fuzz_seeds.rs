//! `fuzz-seeds <dir>`: writes every target's seed inputs to `<dir>/<target>/seed-<n>`, the
//! starting corpora of the libFuzzer runs (`cargo xtask fuzz`).

fn main() {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: fuzz-seeds <corpus folder>");
        std::process::exit(2);
    };
    let dir = std::path::PathBuf::from(dir);
    for target in pretrain_fuzz::TARGETS {
        let folder = dir.join(target.name);
        let written = std::fs::create_dir_all(&folder).and_then(|()| {
            (target.seeds)()
                .iter()
                .enumerate()
                .try_for_each(|(i, seed)| std::fs::write(folder.join(format!("seed-{i}")), seed))
        });
        if let Err(e) = written {
            eprintln!("{}: {e}", folder.display());
            std::process::exit(1);
        }
    }
}
