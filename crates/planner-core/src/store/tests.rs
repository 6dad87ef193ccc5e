//! Unit tests of the cache dir: records, locks, checkouts and temp dirs (toy kinds stand in
//! for the real ones: `crate::testkinds`).

mod basics {
    use super::super::locks::{LockKind, open_lock_file, try_lock_file};
    use super::super::*;
    use crate::testkinds::{BUILD, CLONE, clone_key, named};

    fn record(key: &Key) -> Record {
        let mut rec = Record {
            schema: RECORD_SCHEMA,
            kind: "clone".into(),
            key: key.clone(),
            runtimes: vec!["a".into()],
            repo: "https://h.example/r".into(),
            fields: Fields::new(),
            finished_at: 1,
        };
        set(&mut rec, "commit", &"a".repeat(40));
        rec
    }

    /// Sets a record field as a kind writes it.
    fn set(rec: &mut Record, field: &str, value: &str) {
        rec.fields.insert(field.into(), value.into());
    }

    #[test]
    fn records_round_trip_and_malformed_ones_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = clone_key("r", &"a".repeat(40));
        assert!(store.read_record(&key, CLONE).is_none());
        store.write_record(&record(&key)).unwrap();
        assert_eq!(store.read_record(&key, CLONE), Some(record(&key)));
        assert!(
            store.read_record(&key, BUILD).is_none(),
            "a record of another kind is not trusted"
        );
        fs::write(store.record_path(&key), b"{not json").unwrap();
        assert!(store.read_record(&key, CLONE).is_none());
        let other = clone_key("r", &"b".repeat(40));
        fs::write(
            store.record_path(&other),
            serde_json::to_vec(&record(&key)).unwrap(),
        )
        .unwrap();
        assert!(
            store.read_record(&other, CLONE).is_none(),
            "a record under the wrong key is not trusted"
        );
    }

    #[test]
    fn records_with_invalid_fields_are_misses() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = clone_key("r", &"a".repeat(40));
        let edits: [fn(&mut Record); 6] = [
            |r| set(r, "commit", &format!("a{}", "é".repeat(39))),
            |r| set(r, "commit", &"0".repeat(40)),
            |r| set(r, "commit", "../../etc"),
            |r| set(r, "dockerfile_blake3", "FORGED-0000000000"),
            |r| set(r, "image_id", "sha256:é"),
            |r| r.kind = "bogus".into(),
        ];
        for edit in edits {
            let mut rec = record(&key);
            edit(&mut rec);
            fs::write(store.record_path(&key), serde_json::to_vec(&rec).unwrap()).unwrap();
            assert!(store.read_record(&key, CLONE).is_none(), "{rec:?}");
            let listed = store.list_records(&named()).unwrap();
            assert!(listed[0].record.is_none(), "listed as malformed: {rec:?}");
        }
    }

    #[test]
    fn fifos_and_directories_are_misses_without_blocking_and_writes_get_past_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = clone_key("r", &"a".repeat(40));
        let path = store.record_path(&key);
        let made = std::process::Command::new("mkfifo").arg(&path).status();
        assert!(made.unwrap().success());
        assert!(store.read_record(&key, CLONE).is_none());
        store.write_record(&record(&key)).unwrap();
        assert!(store.read_record(&key, CLONE).is_some(), "FIFO replaced");

        fs::remove_file(&path).unwrap();
        fs::create_dir_all(path.join("x")).unwrap();
        assert!(store.read_record(&key, CLONE).is_none());
        store.write_record(&record(&key)).unwrap();
        store.refresh_record(&record(&key)).unwrap();
        assert!(path.is_dir(), "a full directory is skipped, not an error");
        fs::write(dir.path().join("records/.tmpXYZ"), b"half").unwrap();
        let listed = store.list_records(&named()).unwrap();
        assert_eq!(listed.len(), 2);
        for f in &listed {
            assert!(f.record.is_none());
            store.remove_record_file(&f.path).unwrap();
        }
        assert!(store.list_records(&named()).unwrap().is_empty());

        fs::create_dir(&path).unwrap();
        store.write_record(&record(&key)).unwrap();
        assert!(
            store.read_record(&key, CLONE).is_some(),
            "empty dir replaced"
        );
    }

    #[test]
    fn checkout_state_checks_head() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let commit = "c".repeat(40);
        assert_eq!(store.checkout_state("r", &commit), CheckoutState::Missing);
        let path = store.checkout_path("r", &commit);
        fs::create_dir_all(path.join(".git")).unwrap();
        fs::write(path.join(".git/HEAD"), "d".repeat(40)).unwrap();
        assert!(matches!(
            store.checkout_state("r", &commit),
            CheckoutState::Corrupt(_)
        ));
        fs::write(path.join(".git/HEAD"), format!("{commit}\n")).unwrap();
        assert_eq!(
            store.checkout_state("r", &commit),
            CheckoutState::Present(path)
        );
    }

    #[test]
    fn lock_excludes_a_second_holder_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = clone_key("r", "x");
        let held = store.try_lock(&key).unwrap().expect("free");
        assert!(store.try_lock(&key).unwrap().is_none());
        drop(held);
        assert!(store.try_lock(&key).unwrap().is_some());
    }

    #[test]
    fn a_lock_on_an_unlinked_lock_file_is_not_taken_for_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = clone_key("r", "x");
        let path = store.lock_path(&key);
        // A locker opened the file; then gc took it, unlinked it and let it go; then a third
        // process created the file anew and locked it.
        let opened_before = open_lock_file(&path).unwrap();
        store
            .try_lock(&key)
            .unwrap()
            .unwrap()
            .remove_file()
            .unwrap();
        assert!(!path.exists());
        let new_holder = store.try_lock(&key).unwrap().expect("the new file is free");
        // The first locker's flock on the old inode succeeds, but it holds nothing: it must
        // find the path's file held by the new holder.
        assert!(
            try_lock_file(opened_before, &path, LockKind::Exclusive)
                .unwrap()
                .is_none(),
            "a lock on an unlinked inode is not the lock"
        );
        drop(new_holder);
        let reopened = open_lock_file(&path).unwrap();
        fs::remove_file(&path).unwrap();
        let lock = try_lock_file(reopened, &path, LockKind::Exclusive)
            .unwrap()
            .expect("recreated and taken");
        assert!(path.exists(), "the lock file was recreated");
        assert!(
            store.try_lock(&key).unwrap().is_none(),
            "and it is the one held"
        );
        drop(lock);
    }

    #[tokio::test]
    async fn waiting_for_a_lock_ends_when_the_holder_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = clone_key("r", "w");
        let held = store.try_lock(&key).unwrap().unwrap();
        let waiter = {
            let store = store.clone();
            let key = key.clone();
            tokio::spawn(async move { store.lock(&key).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "waits while held");
        drop(held);
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await;
        assert!(got.unwrap().unwrap().is_ok());
    }

    #[test]
    fn stale_temps_are_cleaned_for_their_key_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = clone_key("r", "a");
        let b = clone_key("r", "b");
        let ta = store.temp_dir(&a).unwrap().keep();
        let tb = store.temp_dir(&b).unwrap().keep();
        assert_eq!(store.clean_stale_temps(&a).unwrap(), 1);
        assert!(!ta.exists() && tb.exists());
    }

    #[test]
    fn repo_dir_names_are_readable_and_distinct() {
        let a = repo_dir_name("https://h.example/org/tpl-a.git");
        assert!(a.starts_with("tpl-a-"), "{a}");
        assert_ne!(a, repo_dir_name("https://other.example/org/tpl-a.git"));
    }
}

mod listing {
    use super::super::*;
    use crate::testkinds::{clone_key, named};

    #[test]
    fn records_are_listed_with_malformed_ones_marked() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let good = clone_key("r", &"a".repeat(40));
        store
            .write_record(&Record {
                schema: RECORD_SCHEMA,
                kind: "clone".into(),
                key: good.clone(),
                runtimes: vec!["a".into()],
                repo: "r".into(),
                fields: [("commit".to_owned(), "a".repeat(40).into())]
                    .into_iter()
                    .collect(),
                finished_at: 1,
            })
            .unwrap();
        let bad = clone_key("r", &"b".repeat(40));
        fs::write(store.record_path(&bad), b"{not json").unwrap();
        fs::write(dir.path().join("records/notakey.json"), b"{}").unwrap();
        let list = store.list_records(&named()).unwrap();
        assert_eq!(list.len(), 3);
        let by_key = |k: &Key| {
            list.iter()
                .find(|f| f.name_key.as_ref() == Some(k))
                .unwrap()
        };
        assert!(by_key(&good).record.is_some() && by_key(&good).bytes > 0);
        assert!(by_key(&bad).record.is_none());
        assert!(
            list.iter()
                .any(|f| f.name_key.is_none() && f.record.is_none())
        );
    }

    #[test]
    fn checkouts_and_temps_are_listed_and_discarded_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let commit = "c".repeat(40);
        let path = store.checkout_path("r", &commit);
        fs::create_dir_all(path.join(".git")).unwrap();
        fs::write(path.join(".git/HEAD"), &commit).unwrap();
        fs::create_dir_all(path.parent().unwrap().join("not-a-commit")).unwrap();
        let listed = store.list_checkouts("r").unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].commit, commit);
        assert!(disk_usage(&path) > 0);

        let key = clone_key("r", &commit);
        let _lock = store.try_lock(&key).unwrap().unwrap();
        store.discard_checkout("r", &commit, &key).unwrap();
        assert_eq!(store.checkout_state("r", &commit), CheckoutState::Missing);
        assert!(
            store.list_temps().unwrap().is_empty(),
            "nothing left in tmp"
        );
        store.discard_checkout("r", &commit, &key).unwrap();

        let t = store.temp_dir(&key).unwrap().keep();
        fs::create_dir(dir.path().join("tmp/stray")).unwrap();
        let temps = store.list_temps().unwrap();
        assert_eq!(temps.len(), 2);
        assert!(
            temps
                .iter()
                .any(|e| e.path == t && e.key.as_ref() == Some(&key))
        );
        assert!(temps.iter().any(|e| e.key.is_none()));
        store.remove_temp(&t).unwrap();
        assert!(!t.exists());
    }

    #[test]
    fn is_locked_probes_without_creating_lock_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = clone_key("r", "x");
        assert!(!store.is_locked(&key).unwrap());
        assert!(!store.lock_path(&key).exists(), "probe creates nothing");
        let held = store.try_lock(&key).unwrap().unwrap();
        assert!(store.is_locked(&key).unwrap());
        drop(held);
        assert!(!store.is_locked(&key).unwrap());
    }

    #[test]
    fn listing_a_missing_cache_dir_is_empty() {
        let store = Store::read_only(Path::new("/nonexistent/planner-cache"));
        assert!(store.list_records(&named()).unwrap().is_empty());
        assert!(store.list_temps().unwrap().is_empty());
        assert!(store.list_checkouts("r").unwrap().is_empty());
    }
}

mod format {
    use super::super::*;
    use crate::testkinds::clone_key;

    /// A record's JSON is the header, the kind's fields in the order it wrote them, then the
    /// time: byte for byte what planner wrote before kinds owned their fields.
    #[test]
    fn records_serialize_as_before() {
        let key = clone_key("r", &"a".repeat(40));
        let fields = [
            ("branch", "main".to_owned()),
            ("commit", "a".repeat(40)),
            ("checkout_id", "c".repeat(64)),
        ];
        let rec = Record {
            schema: RECORD_SCHEMA,
            kind: "clone".into(),
            key: key.clone(),
            runtimes: vec!["a".into(), "b".into()],
            repo: "https://h.example/r".into(),
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone().into()))
                .collect(),
            finished_at: 7,
        };
        let json = String::from_utf8(serde_json::to_vec_pretty(&rec).unwrap()).unwrap();
        let expected = format!(
            "{{\n  \"schema\": 1,\n  \"kind\": \"clone\",\n  \"key\": \"{key}\",\n  \"runtimes\": [\n    \"a\",\n    \"b\"\n  ],\n  \"repo\": \"https://h.example/r\",\n  \"branch\": \"main\",\n  \"commit\": \"{}\",\n  \"checkout_id\": \"{}\",\n  \"finished_at\": 7\n}}",
            "a".repeat(40),
            "c".repeat(64)
        );
        assert_eq!(json, expected);
        let back: Record = serde_json::from_str(&json).unwrap();
        assert_eq!(back, rec);
    }
}
