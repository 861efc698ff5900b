use kube::runtime::finalizer;

/// Why a reconcile failed and is retried. Each message includes its cause, which is therefore not
/// also a `source`: printed as a chain, a cause appears once.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(Box<finalizer::Error<Error>>),
    #[error("the License has no namespace")]
    MissingNamespace,
    #[error("rollout incomplete: {0}")]
    Rollout(String),
}

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        Self::Kube(e)
    }
}

impl Error {
    /// A low-cardinality label for the errors metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(_)) => "api",
            Error::Kube(_) => "transport",
            Error::Finalizer(inner) => match inner.as_ref() {
                finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e.metric_label(),
                _ => "finalizer",
            },
            Error::MissingNamespace => "spec",
            Error::Rollout(_) => "rollout",
        }
    }
}
