//! How a failed command ends: exit code 2 when the request cannot work as given (a flag, the
//! config, the input data, a name), 1 when the operation failed. Each error type says which it
//! is through [`Classify`]; a wrapper error delegates to the error it wraps, so the answer
//! survives any number of layers without `main` downcasting anything.

use std::fmt;

/// Exit code of a command that could not do its job.
pub const EXIT_FAILED: u8 = 1;
/// Exit code of a command that cannot work as given: fix the flags, config or input.
pub const EXIT_USAGE: u8 = 2;

/// What `main` needs to know of an error besides its text.
pub trait Classify {
    /// The user's request cannot work as given (exit code 2); retrying it unchanged fails again.
    fn is_usage(&self) -> bool;
}

/// A failed command as `main` reports it: the error with its causes, and its exit code.
#[derive(Debug)]
pub struct Failure {
    error: anyhow::Error,
    usage: bool,
}

impl Failure {
    /// A failure that is not the user's request (exit code 1), from any error.
    pub fn failed(error: impl Into<anyhow::Error>) -> Self {
        Self {
            error: error.into(),
            usage: false,
        }
    }

    /// A command line that cannot work, found after parsing (exit code 2).
    pub fn usage(message: impl fmt::Display) -> Self {
        Self {
            error: anyhow::anyhow!("{message}"),
            usage: true,
        }
    }

    pub fn exit_code(&self) -> u8 {
        if self.usage { EXIT_USAGE } else { EXIT_FAILED }
    }
}

impl<E> From<E> for Failure
where
    E: Classify + std::error::Error + Send + Sync + 'static,
{
    fn from(error: E) -> Self {
        Self {
            usage: error.is_usage(),
            error: error.into(),
        }
    }
}

/// The error and its causes. Our messages quote their source already (so a log line's
/// `%error` shows it), so a cause is added only where the text above does not hold it yet.
impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = self.error.to_string();
        for cause in self.error.chain().skip(1) {
            let cause = cause.to_string();
            if !text.contains(&cause) {
                text.push_str(": ");
                text.push_str(&cause);
            }
        }
        f.write_str(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Inner {
        #[error("bad name")]
        BadName,
        #[error("io")]
        Io(#[source] std::io::Error),
    }

    impl Classify for Inner {
        fn is_usage(&self) -> bool {
            matches!(self, Self::BadName)
        }
    }

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error(transparent)]
        Inner(#[from] Inner),
    }

    impl Classify for Outer {
        fn is_usage(&self) -> bool {
            match self {
                Self::Inner(inner) => inner.is_usage(),
            }
        }
    }

    #[test]
    fn usage_survives_a_transparent_wrapper() {
        assert_eq!(Failure::from(Outer::from(Inner::BadName)).exit_code(), 2);
        let io = Inner::Io(std::io::Error::other("disk"));
        assert_eq!(Failure::from(Outer::from(io)).exit_code(), 1);
    }

    #[test]
    fn causes_are_shown_once() {
        let io = Inner::Io(std::io::Error::other("disk full"));
        assert_eq!(Failure::from(io).to_string(), "io: disk full");
    }
}
