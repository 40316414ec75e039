use std::time::UNIX_EPOCH;

use super::*;

fn d(n: u8) -> Digest {
    Digest::of(&[n])
}

fn cand(n: u8, size: u64, pinned: bool, in_use: bool) -> Candidate {
    Candidate {
        digest: d(n),
        size,
        pinned,
        in_use,
    }
}

#[test]
fn lru_policy_is_a_pure_function() {
    // (candidates in LRU order, bytes to free) → victims
    let cases: Vec<(Vec<Candidate>, u64, Vec<u8>)> = vec![
        (vec![], 100, vec![]),
        (vec![cand(1, 10, false, false)], 0, vec![]),
        (
            vec![cand(1, 10, false, false), cand(2, 10, false, false)],
            5,
            vec![1],
        ),
        (
            vec![cand(1, 10, false, false), cand(2, 10, false, false)],
            15,
            vec![1, 2],
        ),
        // Pinned and in-use blobs are skipped, whatever their age.
        (
            vec![
                cand(1, 10, true, false),
                cand(2, 10, false, true),
                cand(3, 10, false, false),
            ],
            10,
            vec![3],
        ),
        // Not enough evictable: take what there is.
        (
            vec![cand(1, 10, true, false), cand(2, 5, false, false)],
            100,
            vec![2],
        ),
        // Stops as soon as enough is freed, even with a big blob later.
        (
            vec![
                cand(1, 60, false, false),
                cand(2, 50, false, false),
                cand(3, 1000, false, false),
            ],
            100,
            vec![1, 2],
        ),
    ];
    for (candidates, need, want) in cases {
        let got: Vec<Digest> = select_victims(candidates.clone(), need)
            .into_iter()
            .map(|(d, _)| d)
            .collect();
        let want: Vec<Digest> = want.into_iter().map(d).collect();
        assert_eq!(got, want, "{candidates:?} need {need}");
    }
}

#[test]
fn lru_order_follows_flushed_touches() {
    let dir = tempfile::tempdir().unwrap();
    let idx = Arc::new(Index::open(dir.path()).unwrap());
    for n in 1..=4 {
        idx.insert_blob(&d(n), 100, None).unwrap();
        std::thread::sleep(Duration::from_millis(3));
    }
    assert_eq!(
        idx.totals(),
        Totals {
            bytes: 400,
            blobs: 4,
            pinned_bytes: 0
        }
    );
    // Oldest first: 1, 2, 3, 4. Touch 1 and 2: now 3 and 4 are the oldest.
    std::thread::sleep(Duration::from_millis(3));
    idx.touch(&d(1));
    idx.touch(&d(2));
    // Touches are not visible until flushed.
    assert_eq!(
        idx.plan_eviction(150)
            .unwrap()
            .into_iter()
            .map(|v| v.0)
            .collect::<Vec<_>>(),
        vec![d(1), d(2)]
    );
    assert_eq!(idx.flush().unwrap(), 2);
    assert_eq!(
        idx.plan_eviction(150)
            .unwrap()
            .into_iter()
            .map(|v| v.0)
            .collect::<Vec<_>>(),
        vec![d(3), d(4)]
    );
    // Pinned and leased blobs are not victims.
    assert!(idx.set_pinned(&d(3), true).unwrap());
    let lease = idx.lease(&d(4));
    assert_eq!(
        idx.plan_eviction(150)
            .unwrap()
            .into_iter()
            .map(|v| v.0)
            .collect::<Vec<_>>(),
        vec![d(1), d(2)]
    );
    drop(lease);
    assert_eq!(idx.totals().pinned_bytes, 100);
    assert!(
        !idx.set_pinned(&d(9), true).unwrap(),
        "pinning an unknown blob"
    );
}

#[test]
fn removing_a_manifest_drops_its_records_and_tags() {
    let dir = tempfile::tempdir().unwrap();
    let idx = Index::open(dir.path()).unwrap();
    let (m1, m2) = (d(1), d(2));
    idx.insert_blob(&m1, 10, Some("application/vnd.oci.image.manifest.v1+json"))
        .unwrap();
    idx.insert_blob(&m2, 10, None).unwrap();
    idx.add_manifest("hub", "library/a", &m1).unwrap();
    idx.add_manifest("hub", "library/b", &m1).unwrap();
    idx.add_manifest("hub", "library/a", &m2).unwrap();
    let key = |t: &str| TagKey {
        upstream: "hub".into(),
        repo: "library/a".into(),
        tag: t.into(),
    };
    let rec = |digest: &Digest| TagRecord {
        digest: digest.clone(),
        checked_at: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        pinned: false,
    };
    idx.put_tag_sync(&key("latest"), &rec(&m1)).unwrap();
    idx.put_tag_sync(&key("v1"), &rec(&m1)).unwrap();
    idx.put_tag_sync(&key("v2"), &rec(&m2)).unwrap();
    // Moving v1 to m2 must not let m1's eviction delete it.
    idx.put_tag_sync(&key("v1"), &rec(&m2)).unwrap();
    assert_eq!(idx.manifest_counts().unwrap(), (3, 2));
    assert_eq!(
        idx.entry(&m1).unwrap().unwrap().media_type.as_deref(),
        Some("application/vnd.oci.image.manifest.v1+json")
    );

    idx.remove_blob(&m1).unwrap();
    assert_eq!(idx.get_tag_sync(&key("latest")).unwrap(), None);
    assert_eq!(idx.get_tag_sync(&key("v1")).unwrap(), Some(rec(&m2)));
    assert_eq!(idx.get_tag_sync(&key("v2")).unwrap(), Some(rec(&m2)));
    assert_eq!(idx.manifest_counts().unwrap(), (1, 1));
    assert_eq!(
        idx.totals(),
        Totals {
            bytes: 10,
            blobs: 1,
            pinned_bytes: 0
        }
    );
}

#[test]
fn format_version_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    {
        let idx = Index::open(dir.path()).unwrap();
        idx.db.put(FORMAT_KEY, 99u32.to_be_bytes()).unwrap();
    }
    match Index::open(dir.path()) {
        Err(IndexError::Version {
            found: 99,
            expected: FORMAT_VERSION,
            ..
        }) => {}
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("opened an index of another format"),
    }
}

#[test]
fn second_writer_is_refused_but_readers_are_welcome() {
    let dir = tempfile::tempdir().unwrap();
    let idx = Index::open(dir.path()).unwrap();
    idx.insert_blob(&d(1), 42, None).unwrap();
    idx.save_node_stats(NodeStats {
        started_at: 5,
        hits: 7,
        misses: 3,
    })
    .unwrap();
    assert!(matches!(
        Index::open(dir.path()),
        Err(IndexError::Locked(_))
    ));
    let ro = Index::open_read_only(dir.path()).unwrap();
    assert_eq!(ro.totals().bytes, 42);
    assert_eq!(
        ro.node_stats().unwrap(),
        Some(NodeStats {
            started_at: 5,
            hits: 7,
            misses: 3
        })
    );
}

#[test]
fn entries_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let idx = Index::open(dir.path()).unwrap();
        idx.insert_blob(&d(1), 42, Some("x/y")).unwrap();
        idx.set_pinned(&d(1), true).unwrap();
        idx.touch(&d(1));
        idx.flush().unwrap();
        idx.sync().unwrap();
    }
    let idx = Index::open(dir.path()).unwrap();
    let e = idx.entry(&d(1)).unwrap().unwrap();
    assert!(e.pinned && e.size == 42 && e.media_type.as_deref() == Some("x/y"));
    assert_eq!(
        idx.totals(),
        Totals {
            bytes: 42,
            blobs: 1,
            pinned_bytes: 42
        }
    );
}
