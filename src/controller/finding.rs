//! The one shape in which the controller talks about outcomes: a typed reason, which code may
//! branch on, and a message, which only people read.
//!
//! Each producer owns the reason enum for what it finds (the key's outcome in `key_source`, seat
//! usage in `seats`, target outcomes in `rollout`); `status` decides conditions and events from
//! those types. A reason serialises to the CamelCase string the API has always shown, so the
//! names of the variants are part of the API.

/// A reason and the message that explains it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding<R> {
    pub reason: R,
    pub message: String,
}

impl<R> Finding<R> {
    pub fn new(reason: R, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// A reason as Kubernetes shows it: a CamelCase word in a condition or an event.
pub trait Reason: Copy + std::fmt::Debug {
    fn as_str(self) -> &'static str;
}

/// Declares a reason enum whose variants' names are their API strings.
macro_rules! reasons {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($(#[$vmeta:meta])* $variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            #[allow(dead_code)]
            pub const ALL: &[$name] = &[$($name::$variant),+];
        }

        impl $crate::controller::finding::Reason for $name {
            fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => stringify!($variant)),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str($crate::controller::finding::Reason::as_str(*self))
            }
        }
    };
}
pub(crate) use reasons;

reasons! {
    /// The condition types a License's status carries.
    pub enum ConditionType {
        Ready,
        Valid,
        Expiring,
        InGrace,
        ReadOnly,
        RolledOut,
        WithinSeats,
        /// Every Pod reading a target Secret sees the current key.
        ConsumersLive,
        /// kstatus: work in progress (present only while true).
        Reconciling,
        /// kstatus: cannot progress without a person (present only while true).
        Stalled,
    }
}
