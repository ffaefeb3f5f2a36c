//! The project store on real temporary workspaces: projects, samples and labels, dataset and
//! model versions, manifests, crash leftovers and two handles used at once.

mod store {
    use exeml_core::checks::{at, CheckReport};
    use exeml_core::split::{SplitSpec, Usage};
    use exeml_core::store::{
        DeleteLabelMode, ManifestEntry, NewModelVersion, NewProject, NewSample, ProjectFilter,
        ProjectStatus, PublishRequest, SampleFilter, Store, WorkflowStep,
    };
    use exeml_core::{Error, TaskKind};
    use std::path::{Path, PathBuf};

    fn workspace() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        (dir, store)
    }

    /// A project with `files` (name, content) imported and added with their labels.
    fn image_project(store: &Store, name: &str, files: &[(&str, &[&str])]) -> Vec<i64> {
        store
            .create_project(&NewProject::new(name, TaskKind::Image))
            .expect("create");
        let src = tempfile::tempdir().expect("tempdir");
        let mut samples = Vec::new();
        for (file, labels) in files {
            let path = src.path().join("f");
            std::fs::write(&path, format!("bytes of {file}")).expect("write");
            store.import_file(name, &path, file).expect("import");
            samples.push(NewSample::labelled(*file, labels.iter().copied()));
        }
        store.add_samples(name, &samples).expect("add")
    }

    fn invalid_param(result: Result<impl std::fmt::Debug, Error>) -> (String, String) {
        match result {
            Err(Error::InvalidParameter { name, message }) => (name, message),
            other => panic!("expected InvalidParameter, got {other:?}"),
        }
    }

    fn listed(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    // ---------------------------------------------------------------- projects

    #[test]
    fn creates_lists_and_filters_projects() {
        let (_dir, store) = workspace();
        store
            .create_project(&NewProject::new("flowers", TaskKind::Image).description("five kinds"))
            .expect("flowers");
        store
            .create_project(&NewProject::new("bank-marketing", TaskKind::Tabular))
            .expect("bank");
        store
            .create_project(&NewProject::new("Flower_Boxes", TaskKind::Detection))
            .expect("boxes");
        assert!(store.project_dir("flowers").join("data").is_dir());

        let all = store.list_projects(&ProjectFilter::default()).expect("all");
        let names: Vec<_> = all.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["Flower_Boxes", "bank-marketing", "flowers"]);

        let by_name = ProjectFilter {
            name_contains: Some("flower".into()),
            ..ProjectFilter::default()
        };
        assert_eq!(store.list_projects(&by_name).expect("by name").len(), 2);
        let by_task = ProjectFilter {
            task: Some(TaskKind::Tabular),
            ..ProjectFilter::default()
        };
        assert_eq!(
            store.list_projects(&by_task).expect("by task")[0].name,
            "bank-marketing"
        );

        store
            .set_project_state("flowers", ProjectStatus::Paused, WorkflowStep::Label)
            .expect("state");
        let paused = ProjectFilter {
            status: Some(ProjectStatus::Paused),
            step: Some(WorkflowStep::Label),
            ..ProjectFilter::default()
        };
        let found = store.list_projects(&paused).expect("paused");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].name, "flowers");
        assert_eq!(found[0].description, "five kinds");
        let fresh = store.project("bank-marketing").expect("bank");
        assert_eq!(
            (fresh.status, fresh.step),
            (ProjectStatus::Created, WorkflowStep::Import)
        );
    }

    #[test]
    fn rejects_duplicate_and_bad_project_names() {
        let (_dir, store) = workspace();
        store
            .create_project(&NewProject::new("cats", TaskKind::Image))
            .expect("cats");
        for dup in ["cats", "CATS"] {
            match store.create_project(&NewProject::new(dup, TaskKind::Sound)) {
                Err(Error::AlreadyExists {
                    kind: "project",
                    name,
                }) => assert_eq!(name, "cats"),
                other => panic!("expected AlreadyExists, got {other:?}"),
            }
        }
        for bad in ["", "9lives", "has space", "../up", &"x".repeat(65)] {
            let (field, _) =
                invalid_param(store.create_project(&NewProject::new(bad, TaskKind::Text)));
            assert_eq!(field, "project name");
        }
        let long = NewProject::new("dogs", TaskKind::Image).description("d".repeat(501));
        assert_eq!(invalid_param(store.create_project(&long)).0, "description");
        assert!(matches!(
            store.project("nope"),
            Err(Error::NotFound {
                kind: "project",
                ..
            })
        ));
        assert!(matches!(
            store.set_project_state("nope", ProjectStatus::Running, WorkflowStep::Train),
            Err(Error::NotFound { .. })
        ));
    }

    #[test]
    fn deleting_a_project_removes_rows_and_folder() {
        let (_dir, store) = workspace();
        image_project(&store, "gone", &[("a.jpg", &["x"])]);
        let folder = store.project_dir("gone");
        assert!(folder.join("data/a.jpg").is_file());
        store.delete_project("gone").expect("delete");
        assert!(!folder.exists());
        assert!(listed(&store.root().join("projects")).is_empty());
        assert!(matches!(store.project("gone"), Err(Error::NotFound { .. })));
        // The name is free again, with fresh numbering.
        image_project(&store, "gone", &[("b.jpg", &["y"])]);
        assert_eq!(
            store
                .samples("gone", SampleFilter::All)
                .expect("samples")
                .len(),
            1
        );
    }

    #[test]
    fn refuses_a_workspace_from_a_newer_exeml() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(Store::open(dir.path()).expect("create"));
        let conn = rusqlite::Connection::open(dir.path().join("exeml.sqlite")).expect("sqlite");
        conn.pragma_update(None, "user_version", 99).expect("bump");
        drop(conn);
        match Store::open(dir.path()) {
            Err(Error::Format { message, .. }) => assert!(message.contains("99"), "{message}"),
            other => panic!("expected a format error, got {other:?}"),
        }
    }

    #[test]
    fn default_root_honours_exeml_home() {
        // The only test that touches the variable.
        std::env::set_var("EXEML_HOME", "/tmp/somewhere");
        assert_eq!(Store::default_root(), PathBuf::from("/tmp/somewhere"));
        std::env::remove_var("EXEML_HOME");
        assert_eq!(Store::default_root(), PathBuf::from("exeml-workspace"));
    }

    // ---------------------------------------------------------------- samples and labels

    #[test]
    fn adds_samples_and_lists_them_by_label() {
        let (_dir, store) = workspace();
        let ids = image_project(
            &store,
            "flowers",
            &[
                ("sun/1.jpg", &["向日葵"]),
                ("sun/2.jpg", &["向日葵", "yellow"]),
                ("rose/1.jpg", &["rose"]),
                ("new/1.jpg", &[]),
            ],
        );
        assert_eq!(ids.len(), 4);
        let labelled = store
            .samples("flowers", SampleFilter::Labelled)
            .expect("labelled");
        assert_eq!(labelled.len(), 3);
        assert_eq!(labelled[1].labels, ["yellow", "向日葵"]);
        assert!(labelled[1].labelled_at.is_some());
        let unlabelled = store
            .samples("flowers", SampleFilter::Unlabelled)
            .expect("unlabelled");
        assert_eq!(unlabelled.len(), 1);
        assert_eq!(unlabelled[0].source, "new/1.jpg");
        assert_eq!(unlabelled[0].labelled_at, None);
        let sun = store
            .samples("flowers", SampleFilter::WithLabel("向日葵".into()))
            .expect("sun");
        assert_eq!(sun.len(), 2);
        let counts = store.label_counts("flowers").expect("counts");
        assert_eq!(counts.get("向日葵"), Some(&2));
        assert_eq!(counts.get("rose"), Some(&1));
        assert_eq!(counts.len(), 3);

        // A file already a sample, a file not imported, a bad label.
        assert!(matches!(
            store.add_samples("flowers", &[NewSample::new("rose/1.jpg")]),
            Err(Error::AlreadyExists { kind: "sample", .. })
        ));
        assert!(matches!(
            store.add_samples("flowers", &[NewSample::new("missing.jpg")]),
            Err(Error::NotFound { kind: "file", .. })
        ));
        let bad = store.add_samples(
            "flowers",
            &[NewSample::labelled("new/1.jpg", ["two words"])],
        );
        let (field, message) = invalid_param(bad);
        assert_eq!(field, "label");
        assert!(message.contains("two words"), "{message}");
        assert_eq!(
            store
                .samples("flowers", SampleFilter::All)
                .expect("all")
                .len(),
            4
        );
    }

    #[test]
    fn rejects_file_names_escaping_the_data_folder() {
        let (dir, store) = workspace();
        store
            .create_project(&NewProject::new("p", TaskKind::Image))
            .expect("create");
        let src = dir.path().join("src.jpg");
        std::fs::write(&src, b"x").expect("write");
        for bad in [
            "../evil.jpg",
            "a/../../evil.jpg",
            "/tmp/evil.jpg",
            "..\\evil.jpg",
        ] {
            let (field, message) = invalid_param(store.import_file("p", &src, bad));
            assert_eq!(field, "file name");
            assert!(message.contains(bad), "{message}");
        }
        assert!(!dir.path().join("projects/evil.jpg").exists());
        let stored = store
            .import_file("p", &src, "./ok/src.jpg")
            .expect("inside");
        assert_eq!(stored, store.data_dir("p").join("ok/src.jpg"));
        assert!(
            invalid_param(store.add_samples("p", &[NewSample::new("../src.jpg")])).0 == "source"
        );
    }

    #[test]
    fn adds_sets_and_renames_labels() {
        let (_dir, store) = workspace();
        let ids = image_project(
            &store,
            "p",
            &[("a.jpg", &["cat"]), ("b.jpg", &["dog"]), ("c.jpg", &[])],
        );
        assert_eq!(store.add_label("p", &ids, "animal").expect("add"), 3);
        assert_eq!(store.add_label("p", &ids[..1], "animal").expect("again"), 0);
        assert!(matches!(
            store.add_label("p", &[9999], "animal"),
            Err(Error::NotFound { kind: "sample", .. })
        ));
        store
            .set_labels("p", ids[2], &["猫".into(), "猫".into()])
            .expect("set");
        assert_eq!(store.sample("p", ids[2]).expect("c").labels, ["猫"]);

        // Rename everywhere, merging into a label already used.
        assert_eq!(store.rename_label("p", "猫", "cat").expect("merge"), 1);
        let counts = store.label_counts("p").expect("counts");
        assert_eq!(counts.get("cat"), Some(&2));
        assert!(!counts.contains_key("猫"));
        assert!(matches!(
            store.rename_label("p", "猫", "cat"),
            Err(Error::NotFound { kind: "label", .. })
        ));
        assert_eq!(
            invalid_param(store.rename_label("p", "cat", "a b")).0,
            "label"
        );

        store.set_labels("p", ids[1], &[]).expect("clear");
        let unlabelled = store
            .samples("p", SampleFilter::Unlabelled)
            .expect("unlabelled");
        assert_eq!(unlabelled.len(), 1);
        assert_eq!(unlabelled[0].labelled_at, None);
        assert_eq!(store.delete_samples("p", &[ids[1]]).expect("delete"), 1);
        assert!(matches!(
            store.delete_samples("p", &[ids[1]]),
            Err(Error::NotFound { .. })
        ));
        assert!(store.data_dir("p").join("b.jpg").is_file(), "files stay");
    }

    #[test]
    fn deleting_a_label_only_keeps_every_sample() {
        let (_dir, store) = workspace();
        let ids = image_project(
            &store,
            "p",
            &[("a.jpg", &["cat"]), ("b.jpg", &["cat", "pet"])],
        );
        let plan = store
            .plan_delete_label("p", "cat", DeleteLabelMode::LabelOnly)
            .expect("plan");
        assert_eq!(plan.label_removed_from, ids);
        assert!(plan.samples_deleted.is_empty() && plan.files_deleted.is_empty());
        let done = store
            .delete_label("p", "cat", DeleteLabelMode::LabelOnly)
            .expect("delete");
        assert_eq!(done, plan);
        assert_eq!(store.samples("p", SampleFilter::All).expect("all").len(), 2);
        assert_eq!(
            store
                .samples("p", SampleFilter::Unlabelled)
                .expect("un")
                .len(),
            1
        );
        assert!(matches!(
            store.delete_label("p", "cat", DeleteLabelMode::LabelOnly),
            Err(Error::NotFound { kind: "label", .. })
        ));
    }

    #[test]
    fn deleting_a_label_and_its_samples_keeps_their_files() {
        let (_dir, store) = workspace();
        let ids = image_project(
            &store,
            "p",
            &[
                ("a.jpg", &["cat"]),
                ("b.jpg", &["cat", "pet"]),
                ("c.jpg", &["dog"]),
            ],
        );
        let mode = DeleteLabelMode::LabelAndOnlyLabelledSamples;
        let plan = store.plan_delete_label("p", "cat", mode).expect("plan");
        assert_eq!(plan.label_removed_from, [ids[1]]);
        assert_eq!(plan.samples_deleted.len(), 1);
        assert_eq!(plan.samples_deleted[0].source, "a.jpg");
        assert!(plan.files_deleted.is_empty());
        assert_eq!(store.delete_label("p", "cat", mode).expect("delete"), plan);
        let left: Vec<_> = store
            .samples("p", SampleFilter::All)
            .expect("all")
            .into_iter()
            .map(|s| (s.source, s.labels))
            .collect();
        assert_eq!(
            left,
            [
                ("b.jpg".into(), vec!["pet".to_string()]),
                ("c.jpg".into(), vec!["dog".to_string()])
            ]
        );
        assert!(store.data_dir("p").join("a.jpg").is_file());
    }

    #[test]
    fn deleting_samples_and_files_spares_files_of_published_versions() {
        let (_dir, store) = workspace();
        let data = |f: &str| store.data_dir("p").join(f);
        image_project(
            &store,
            "p",
            &[
                ("a.jpg", &["cat"]),
                ("b.jpg", &["cat"]),
                ("c.jpg", &["dog"]),
                ("d.jpg", &["dog"]),
            ],
        );
        store
            .publish_labelled_samples("p", SplitSpec::default(), CheckReport::new())
            .expect("publish V001");
        // A file added after publishing is not protected.
        let src = tempfile::tempdir().expect("tempdir");
        std::fs::write(src.path().join("e"), b"e").expect("write");
        store
            .import_file("p", &src.path().join("e"), "e.jpg")
            .expect("import");
        store
            .add_samples("p", &[NewSample::labelled("e.jpg", ["cat"])])
            .expect("add");

        let mode = DeleteLabelMode::SamplesAndFiles;
        let plan = store.plan_delete_label("p", "cat", mode).expect("plan");
        assert_eq!(plan.samples_deleted.len(), 3);
        assert_eq!(plan.files_deleted, [data("e.jpg")]);
        assert_eq!(plan.files_kept, [data("a.jpg"), data("b.jpg")]);
        assert!(data("e.jpg").is_file(), "planning removes nothing");
        let done = store.delete_label("p", "cat", mode).expect("delete");
        assert_eq!(done, plan);
        assert!(!data("e.jpg").exists());
        assert!(data("a.jpg").is_file() && data("b.jpg").is_file());
        assert_eq!(store.samples("p", SampleFilter::All).expect("all").len(), 2);
        // The published version still reads whole.
        assert_eq!(
            store.version_entries("p", "V001").expect("entries").len(),
            4
        );
        assert!(done.to_string().contains("2 file(s) kept"), "{done}");
    }

    // ---------------------------------------------------------------- dataset versions

    fn many_labelled(store: &Store, project: &str, per_class: &[(&str, usize)]) {
        let files: Vec<(String, Vec<&str>)> = per_class
            .iter()
            .flat_map(|(label, n)| (0..*n).map(move |i| (format!("{label}/{i}.jpg"), vec![*label])))
            .collect();
        let refs: Vec<(&str, &[&str])> = files
            .iter()
            .map(|(f, l)| (f.as_str(), l.as_slice()))
            .collect();
        image_project(store, project, &refs);
    }

    #[test]
    fn publishes_stratified_immutable_versions() {
        let (_dir, store) = workspace();
        many_labelled(&store, "p", &[("rose", 20), ("tulip", 10)]);
        let mut checks = CheckReport::new();
        checks.warn("few_samples", "under 20 per class", at().label("tulip"));
        let v1 = store
            .publish_labelled_samples(
                "p",
                SplitSpec {
                    train_ratio: 0.8,
                    seed: 7,
                },
                checks.clone(),
            )
            .expect("publish");
        assert_eq!(v1.name, "V001");
        assert_eq!((v1.n_samples, v1.n_train, v1.n_validation), (30, 24, 6));
        assert_eq!(v1.label_counts.get("rose"), Some(&20));
        assert_eq!(v1.checks, checks);
        assert_eq!(v1.content_hash.len(), 64);
        for file in ["manifest.jsonl", "checks.json", "version.json"] {
            assert!(v1.dir.join(file).is_file(), "{file}");
        }
        let entries = store.version_entries("p", "V001").expect("entries");
        let valid = |label: &str| {
            entries
                .iter()
                .filter(|e| e.labels == [label] && e.usage == Usage::Validation)
                .count()
        };
        assert_eq!(
            (valid("rose"), valid("tulip")),
            (4, 2),
            "each class keeps the ratio"
        );

        // Same content again: the same version, no duplicate.
        let again = store
            .publish_labelled_samples(
                "p",
                SplitSpec {
                    train_ratio: 0.8,
                    seed: 7,
                },
                checks,
            )
            .expect("again");
        assert_eq!(again.name, "V001");
        assert_eq!(again.content_hash, v1.content_hash);
        assert_eq!(store.dataset_versions("p").expect("list").len(), 1);

        // Relabelling leaves V001 as it was; publishing makes V002.
        let tulip = store
            .samples("p", SampleFilter::WithLabel("tulip".into()))
            .expect("tulips");
        store
            .set_labels("p", tulip[0].id, &["rose".into()])
            .expect("relabel");
        assert_eq!(
            store.version_entries("p", "V001").expect("entries"),
            entries
        );
        let v2 = store
            .publish_labelled_samples(
                "p",
                SplitSpec {
                    train_ratio: 0.8,
                    seed: 7,
                },
                CheckReport::new(),
            )
            .expect("V002");
        assert_eq!(v2.name, "V002");
        assert_ne!(v2.content_hash, v1.content_hash);
        let names: Vec<_> = store
            .dataset_versions("p")
            .expect("list")
            .into_iter()
            .map(|v| v.name)
            .collect();
        assert_eq!(names, ["V001", "V002"]);
        assert_eq!(
            store.dataset_version("p", "v2").expect("by number").name,
            "V002"
        );
        assert!(matches!(
            store.dataset_version("p", "V009"),
            Err(Error::NotFound {
                kind: "dataset version",
                ..
            })
        ));

        // A file a version uses cannot be replaced under the same name.
        let src = tempfile::tempdir().expect("tempdir");
        std::fs::write(src.path().join("x"), b"other bytes").expect("write");
        let source = &entries[0].source;
        assert_eq!(
            invalid_param(store.import_file("p", &src.path().join("x"), source)).0,
            "file name"
        );
        // …but importing identical bytes is a no-op.
        let same = store.data_dir("p").join(source);
        let copy = src.path().join("same");
        std::fs::copy(&same, &copy).expect("copy");
        store.import_file("p", &copy, source).expect("identical");
    }

    #[test]
    fn publishes_a_table_snapshot_with_meta() {
        let (_dir, store) = workspace();
        store
            .create_project(&NewProject::new("bank", TaskKind::Tabular))
            .expect("create");
        let src = tempfile::tempdir().expect("tempdir");
        let csv = src.path().join("bank.csv");
        std::fs::write(&csv, "age,y\n30,no\n40,yes\n50,no\n60,yes\n").expect("write");
        store.import_file("bank", &csv, "bank.csv").expect("import");
        store
            .add_samples("bank", &[NewSample::new("bank.csv")])
            .expect("sample");
        let entries: Vec<ManifestEntry> = (0..4)
            .map(|row| ManifestEntry {
                source: "bank.csv".into(),
                row: Some(row),
                labels: vec![],
                usage: if row == 3 {
                    Usage::Validation
                } else {
                    Usage::Train
                },
            })
            .collect();
        let request = |label: &str| PublishRequest {
            snapshot_files: vec![PathBuf::from("bank.csv")],
            meta: serde_json::json!({ "label_column": label }),
            ..PublishRequest::new(entries.clone(), SplitSpec::default())
        };
        let v1 = store
            .publish_version("bank", request("y"))
            .expect("publish");
        assert_eq!(v1.snapshot_files, ["bank.csv"]);
        let snapshot = v1.source_path("bank.csv");
        assert_eq!(snapshot, v1.dir.join("data/bank.csv"));
        assert_eq!(
            std::fs::read(&snapshot).expect("snapshot"),
            std::fs::read(&csv).expect("csv")
        );
        assert_eq!((v1.n_train, v1.n_validation), (3, 1));
        assert_eq!(v1.meta["label_column"], "y");

        // The table in data/ may be replaced: the version keeps its own copy.
        std::fs::write(&csv, "age,y\n1,no\n").expect("rewrite");
        store
            .import_file("bank", &csv, "bank.csv")
            .expect("replace");
        assert_ne!(
            std::fs::read(&snapshot).expect("snapshot"),
            b"age,y\n1,no\n"
        );
        // Another label column is other content.
        let v2 = store
            .publish_version("bank", request("age"))
            .expect("publish");
        assert_eq!(v2.name, "V002");
        // Rows with the same file stay rows.
        let read = store.version_entries("bank", "V001").expect("entries");
        assert_eq!(read, entries);

        let missing = PublishRequest {
            snapshot_files: vec![PathBuf::from("nope.csv")],
            ..PublishRequest::new(entries.clone(), SplitSpec::default())
        };
        assert!(matches!(
            store.publish_version("bank", missing),
            Err(Error::NotFound { kind: "file", .. })
        ));
        let bad_ratio = PublishRequest::new(
            entries,
            SplitSpec {
                train_ratio: 1.0,
                seed: 0,
            },
        );
        assert!(store.publish_version("bank", bad_ratio).is_err());
        assert_eq!(store.dataset_versions("bank").expect("list").len(), 2);
    }

    #[test]
    fn manifest_export_and_import_round_trip() {
        let (dir, store) = workspace();
        many_labelled(&store, "a", &[("猫", 3), ("dog", 3)]);
        store
            .publish_labelled_samples("a", SplitSpec::default(), CheckReport::new())
            .expect("publish");
        let out = dir.path().join("out/a.jsonl");
        assert_eq!(store.export_manifest("a", "V001", &out).expect("export"), 6);
        let exported = exeml_core::store::read_manifest(&out).expect("read");
        assert!(exported.iter().all(|e| Path::new(&e.source).is_absolute()));

        store
            .create_project(&NewProject::new("b", TaskKind::Image))
            .expect("b");
        assert_eq!(store.import_manifest("b", &out).expect("import"), 6);
        let mut got: Vec<_> = store
            .samples("b", SampleFilter::All)
            .expect("samples")
            .into_iter()
            .map(|s| s.labels)
            .collect();
        got.sort();
        assert_eq!(got.iter().filter(|l| *l == &["猫"]).count(), 3);
        assert_eq!(
            store.label_counts("b").expect("counts"),
            store.label_counts("a").expect("a")
        );
        for sample in store.samples("b", SampleFilter::All).expect("samples") {
            assert!(
                store.data_dir("b").join(&sample.source).is_file(),
                "copied in"
            );
        }
        // Importing the same files again is refused, naming the line.
        let again = store.import_manifest("b", &out).expect_err("duplicate");
        assert!(again.to_string().contains("line 1"), "{again}");
    }

    #[test]
    fn imports_relative_manifests_and_names_bad_lines() {
        let (dir, store) = workspace();
        store
            .create_project(&NewProject::new("p", TaskKind::Sound))
            .expect("create");
        let src = dir.path().join("incoming");
        std::fs::create_dir_all(src.join("bird")).expect("mkdir");
        std::fs::create_dir_all(src.join("other")).expect("mkdir");
        std::fs::write(src.join("bird/1.wav"), b"one").expect("write");
        std::fs::write(src.join("other/1.wav"), b"two").expect("write");
        let manifest = src.join("m.jsonl");
        let abs = src.join("other/1.wav");
        std::fs::write(
            &manifest,
            format!(
                "{{\"source\":\"bird/1.wav\",\"labels\":[\"bird\"]}}\n\n\
             {{\"source\":\"bird/1.wav\",\"labels\":[\"loud\"],\"usage\":\"train\"}}\n\
             {{\"source\":{:?},\"labels\":[]}}\n",
                abs.display().to_string()
            ),
        )
        .expect("write");
        assert_eq!(store.import_manifest("p", &manifest).expect("import"), 2);
        let samples = store.samples("p", SampleFilter::All).expect("samples");
        assert_eq!(samples[0].source, "bird/1.wav");
        assert_eq!(samples[0].labels, ["bird", "loud"]);
        assert_eq!(samples[1].source, "1.wav");

        let bad_label = src.join("bad.jsonl");
        std::fs::write(
        &bad_label,
        "{\"source\":\"bird/1.wav\",\"labels\":[\"ok\"]}\n{\"source\":\"bird/1.wav\",\"labels\":[\"not ok\"]}\n",
    )
    .expect("write");
        let text = store
            .import_manifest("p", &bad_label)
            .expect_err("bad")
            .to_string();
        assert!(
            text.contains("bad.jsonl") && text.contains("line 2") && text.contains("not ok"),
            "{text}"
        );
        let missing = src.join("missing.jsonl");
        std::fs::write(&missing, "{\"source\":\"nope.wav\",\"labels\":[]}\n").expect("write");
        let text = store
            .import_manifest("p", &missing)
            .expect_err("missing")
            .to_string();
        assert!(
            text.contains("missing.jsonl") && text.contains("line 1") && text.contains("nope.wav"),
            "{text}"
        );
        assert_eq!(
            store
                .samples("p", SampleFilter::All)
                .expect("samples")
                .len(),
            2
        );
    }

    // ---------------------------------------------------------------- model versions

    fn register(store: &Store, project: &str, record: NewModelVersion) -> String {
        let draft = store.begin_model_version(project).expect("begin");
        std::fs::write(draft.path().join("manifest.json"), b"{}").expect("artifact");
        store
            .register_model_version(project, draft, record)
            .expect("register")
            .version
    }

    #[test]
    fn numbers_model_versions_and_sorts_them_numerically() {
        let (_dir, store) = workspace();
        many_labelled(&store, "p", &[("a", 2), ("b", 2)]);
        let data = store
            .publish_labelled_samples("p", SplitSpec::default(), CheckReport::new())
            .expect("publish");
        let first = NewModelVersion {
            dataset_version: Some(data.name.clone()),
            params: serde_json::json!({ "family": "gbdt" }),
            metrics: serde_json::json!({ "accuracy": 0.93 }),
            duration_secs: 1.5,
            summary: "gbdt, accuracy 0.93".into(),
            ..NewModelVersion::default()
        };
        assert_eq!(register(&store, "p", first), "0.0.1");
        for _ in 2..=11 {
            let child = NewModelVersion {
                parent: Some("0.0.1".into()),
                ..NewModelVersion::default()
            };
            register(&store, "p", child);
        }
        let versions = store.model_versions("p").expect("list");
        let names: Vec<_> = versions.iter().map(|v| v.version.as_str()).collect();
        let expected: Vec<String> = (1..=11).map(|n| format!("0.0.{n}")).collect();
        assert_eq!(names, expected);
        assert_eq!(versions[0].dataset_version.as_deref(), Some("V001"));
        assert_eq!(versions[0].metrics["accuracy"], 0.93);
        assert_eq!(versions[10].parent.as_deref(), Some("0.0.1"));
        assert!(versions[10].artifact_dir.join("manifest.json").is_file());
        assert_eq!(
            store.model_version("p", "10").expect("by number").version,
            "0.0.10"
        );

        // Deployed versions cannot be deleted; deleted numbers are not reused.
        store.set_deployed("p", "0.0.11", true).expect("deploy");
        assert!(store.model_version("p", "0.0.11").expect("v").deployed);
        assert!(store.delete_model_version("p", "0.0.11").is_err());
        store.set_deployed("p", "0.0.11", false).expect("undeploy");
        store.delete_model_version("p", "0.0.11").expect("delete");
        assert!(!store.project_dir("p").join("models/0.0.11").exists());
        assert!(matches!(
            store.model_version("p", "0.0.11"),
            Err(Error::NotFound {
                kind: "model version",
                ..
            })
        ));
        assert_eq!(register(&store, "p", NewModelVersion::default()), "0.0.12");

        // Lineage must point at what exists; a failed registration leaves nothing.
        for record in [
            NewModelVersion {
                parent: Some("0.0.99".into()),
                ..NewModelVersion::default()
            },
            NewModelVersion {
                dataset_version: Some("V042".into()),
                ..NewModelVersion::default()
            },
        ] {
            let draft = store.begin_model_version("p").expect("begin");
            let staged = draft.path().to_path_buf();
            assert!(matches!(
                store.register_model_version("p", draft, record),
                Err(Error::NotFound { .. })
            ));
            assert!(!staged.exists());
        }
        assert_eq!(store.model_versions("p").expect("list").len(), 11);
    }

    #[test]
    fn a_dropped_draft_registers_nothing_and_leaves_no_folder() {
        let (_dir, store) = workspace();
        store
            .create_project(&NewProject::new("p", TaskKind::Text))
            .expect("create");
        {
            let draft = store.begin_model_version("p").expect("begin");
            std::fs::write(draft.path().join("weights.safetensors"), b"w").expect("write");
            assert!(draft
                .path()
                .starts_with(store.project_dir("p").join("models")));
        }
        assert!(listed(&store.project_dir("p").join("models")).is_empty());
        assert!(store.model_versions("p").expect("list").is_empty());
        assert_eq!(register(&store, "p", NewModelVersion::default()), "0.0.1");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn cleans_staging_folders_of_dead_processes_only() {
        let (_dir, store) = workspace();
        store
            .create_project(&NewProject::new("p", TaskKind::Image))
            .expect("create");
        let models = store.project_dir("p").join("models");
        // A process that has exited: its pid is free (reuse within this test is unlikely).
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let dead_pid = child.id();
        child.wait().expect("wait");
        let ns = std::fs::read_link("/proc/self/ns/pid").expect("ns");
        let ns = ns
            .to_string_lossy()
            .trim_start_matches("pid:[")
            .trim_end_matches(']')
            .to_string();
        let killed = models.join(format!(".exeml-staging-{dead_pid}-{ns}-abc123"));
        std::fs::create_dir_all(&killed).expect("leftover");
        std::fs::write(killed.join("half.bin"), b"partial").expect("write");
        let live = store.begin_model_version("p").expect("live draft");
        // Leftovers are invisible to listings, removed by clean-up; the live draft stays.
        assert!(store.model_versions("p").expect("list").is_empty());
        assert!(!killed.exists(), "begin_model_version cleans the project");
        std::fs::create_dir_all(&killed).expect("leftover again");
        assert_eq!(store.cleanup_stale().expect("cleanup"), 1);
        assert!(live.path().is_dir());
        assert_eq!(register(&store, "p", NewModelVersion::default()), "0.0.1");
        drop(live);
        assert_eq!(listed(&models), ["0.0.1"]);
    }

    #[test]
    fn two_handles_on_one_workspace_get_distinct_versions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().to_path_buf();
        {
            let store = Store::open(&root).expect("open");
            many_labelled(&store, "p", &[("a", 4), ("b", 4)]);
        }
        let workers: Vec<_> = (0..2u64)
            .map(|worker| {
                let root = root.clone();
                std::thread::spawn(move || -> Vec<String> {
                    let store = Store::open(&root).expect("open in thread");
                    let mut got = Vec::new();
                    for round in 0..5u64 {
                        got.push(register(&store, "p", NewModelVersion::default()));
                        let spec = SplitSpec {
                            train_ratio: 0.5,
                            seed: worker * 100 + round,
                        };
                        store
                            .publish_labelled_samples("p", spec, CheckReport::new())
                            .expect("publish in thread");
                    }
                    got
                })
            })
            .collect();
        let mut all: Vec<String> = workers
            .into_iter()
            .flat_map(|w| w.join().expect("thread"))
            .collect();
        all.sort_by_key(|v| v.trim_start_matches("0.0.").parse::<u32>().unwrap_or(0));
        let expected: Vec<String> = (1..=10).map(|n| format!("0.0.{n}")).collect();
        assert_eq!(all, expected);
        let store = Store::open(&root).expect("reopen");
        let versions = store.dataset_versions("p").expect("versions");
        let mut names: Vec<_> = versions.iter().map(|v| v.name.clone()).collect();
        names.dedup();
        assert_eq!(
            names.len(),
            versions.len(),
            "distinct dataset version names"
        );
        assert!(!versions.is_empty());
        let models = listed(&store.project_dir("p").join("models"));
        assert_eq!(models.len(), 10, "no leftovers: {models:?}");
    }

    #[test]
    fn opening_a_fresh_workspace_from_two_threads_at_once_succeeds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("ws");
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let root = root.clone();
                std::thread::spawn(move || {
                    let store = Store::open(&root).expect("open");
                    store
                        .create_project(&NewProject::new(format!("p{i}"), TaskKind::Text))
                        .expect("create");
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        let store = Store::open(&root).expect("open");
        assert_eq!(
            store
                .list_projects(&ProjectFilter::default())
                .expect("list")
                .len(),
            4
        );
    }
}
