//! The conformance suite against the embedded engine, in memory and on disk.

mod in_memory {
    async fn bus() -> herald_testkit::TestBus {
        herald_testkit::TestBus::memory()
    }
    herald_testkit::conformance_tests!(bus);
}

mod on_disk {
    async fn bus() -> herald_testkit::TestBus {
        herald_testkit::TestBus::on_disk().await
    }
    herald_testkit::conformance_tests!(bus);
}
