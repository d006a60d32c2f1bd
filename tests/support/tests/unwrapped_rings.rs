//! A binary that links the engine without the ring wrapper's link argument, as a build by
//! another build system or with `BEACON_LINK_RING_WRAP=0` would be: this package does not use
//! engine/build.rs. It must still link (the wrapper's reference to liburing's setup is weak),
//! run glommio on glommio's own ring flags, and know that it was not wrapped, which is what
//! `beacon serve` then says at start.

#[test]
fn a_binary_linked_without_the_wrapper_runs_and_knows_it() {
    let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(64 << 10)
        .make()
        .expect("a glommio executor starts here");
    let answer = ex.run(async {
        glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
        42
    });
    assert_eq!(answer, 42);
    let r = beacon_engine::Rings::read();
    assert!(!r.wrapped, "{r:?}");
    assert_eq!(
        (r.cooperative, r.interrupting, r.polled),
        (0, 0, 0),
        "no ring went through the wrapper"
    );
}
