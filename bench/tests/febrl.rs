//! The linker on public data it was not written for (bench/data/febrl): a floor under
//! the figures `kinlink-bench febrl` prints, so that a change that loses precision or
//! recall there fails CI. The figures themselves are in README "Performance".

use kinlink_bench::febrl::{run_case, shipped_data, CASES};

/// (case, least F1, least recall over the pairs the rules allow). Precision must stay
/// at 0.999 and the review queue within 3% of records for every case.
const FLOORS: [(&str, f64, f64); 2] = [
    ("dataset4a × dataset4b", 0.95, 0.94),
    ("dataset3", 0.93, 0.91),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn febrl_linkage_holds_its_floor() {
    for case in &CASES {
        let dir = tempfile::tempdir().unwrap();
        let score = run_case(case, &shipped_data(), dir.path(), 3)
            .await
            .unwrap();
        let (_, f1, recall_allowed) = FLOORS
            .iter()
            .find(|(name, _, _)| *name == case.name)
            .copied()
            .unwrap();
        let report = kinlink_bench::febrl::markdown(std::slice::from_ref(&score));
        assert!(score.precision >= 0.999, "{report}");
        assert!(score.f1 >= f1, "{report}");
        assert!(score.recall_allowed >= recall_allowed, "{report}");
        assert!(score.review_percent <= 3.0, "{report}");
    }
}
