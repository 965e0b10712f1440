//! The software backend passes the conformance suite.

use keys::{SoftwareSigner, conformance};

#[tokio::test]
async fn software_backend_conforms() {
    conformance::run(&SoftwareSigner::new()).await;
}
