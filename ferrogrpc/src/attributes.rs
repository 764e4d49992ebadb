//! Typed attributes carried from a resolver to balancers (gRPC-Go's
//! `attributes` package).
//!
//! An [`Attributes`] is an immutable map from a Rust type to one value of
//! that type: the type is the key, so two libraries cannot collide on a
//! string, and reading gives a typed reference without a cast. Resolvers put
//! attributes on [`Endpoint`](crate::resolver::Endpoint)s, on individual
//! addresses of an endpoint ([`Endpoint::with_address_attributes`](crate::resolver::Endpoint::with_address_attributes),
//! also readable on the subchannel made for the address) and on the whole
//! [`State`](crate::resolver::State); balancers read them (a weight, a
//! locality, a hierarchy path) and can tell when they changed, because
//! attributes compare by value.
//!
//! ```
//! use ferrogrpc::attributes::Attributes;
//!
//! #[derive(Debug, PartialEq)]
//! struct Weight(u32);
//! #[derive(Debug, PartialEq)]
//! struct Zone(&'static str);
//!
//! let a = Attributes::new().with_value(Weight(3)).with_value(Zone("eu-west1-b"));
//! assert_eq!(a.value::<Weight>(), Some(&Weight(3)));
//! let b = a.with_value(Weight(5)); // a is unchanged
//! assert_eq!(a.value::<Weight>(), Some(&Weight(3)));
//! assert_ne!(a, b);
//! assert_eq!(b.value::<Zone>(), Some(&Zone("eu-west1-b")));
//! ```
//!
//! # Cost
//!
//! An empty map is a null pointer: no allocation. A non-empty one is one
//! reference-counted slice, shared by clones; [`with_value`](Attributes::with_value)
//! copies it (a handful of pointers), as the map is meant to hold a few
//! entries and be read far more often than written. Lookups are a linear
//! scan comparing [`TypeId`]s.
//!
//! # Why types rather than keys
//!
//! gRPC-Go keys by any comparable value, usually an unexported struct type
//! of the package that owns the attribute, which is a type used as a key
//! in all but name. Keying by the value's type says so directly; a package
//! that needs two values of the same shape wraps them in two newtypes.

use std::{
    any::{Any, TypeId},
    fmt,
    hash::{Hash, Hasher},
    sync::Arc,
};

/// What an attribute value must be: shareable, comparable (so a balancer
/// sees changes) and printable (for logs). Implemented for every type that
/// is `Any + Send + Sync + PartialEq + Debug`.
pub trait Value: Any + Send + Sync + fmt::Debug {
    /// Whether `other` is a value of the same type equal to this one.
    fn equals(&self, other: &dyn Value) -> bool;
    /// This value as `Any`, to downcast.
    fn as_any(&self) -> &dyn Any;
}

impl<T: Any + Send + Sync + PartialEq + fmt::Debug> Value for T {
    fn equals(&self, other: &dyn Value) -> bool {
        other.as_any().downcast_ref::<T>() == Some(self)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// An immutable map from a type to one value of that type; see the
/// [module docs](self). Cheap to clone (one reference count, or nothing
/// when empty); equal when both hold the same types with equal values,
/// whatever the order they were added in.
#[derive(Clone, Default)]
pub struct Attributes {
    entries: Option<Arc<[Entry]>>,
}

/// One value and its type.
type Entry = (TypeId, Arc<dyn Value>);

impl Attributes {
    /// An empty map (no allocation).
    pub const fn new() -> Attributes {
        Attributes { entries: None }
    }

    fn entries(&self) -> &[Entry] {
        self.entries.as_deref().unwrap_or(&[])
    }

    /// A copy of this map with `value` under its type `T`, replacing the
    /// value of that type if there was one. `self` is not changed.
    #[must_use]
    pub fn with_value<T: Value>(&self, value: T) -> Attributes {
        self.with_shared(Arc::new(value))
    }

    /// Like [`with_value`](Self::with_value), for a value already shared
    /// (an `Arc<T>` kept elsewhere too).
    #[must_use]
    pub fn with_shared<T: Value>(&self, value: Arc<T>) -> Attributes {
        let key = TypeId::of::<T>();
        let mut entries: Vec<Entry> = Vec::with_capacity(self.len() + 1);
        entries.extend(
            self.entries()
                .iter()
                .filter(|(k, _)| *k != key)
                .map(|(k, v)| (*k, Arc::clone(v))),
        );
        entries.push((key, value));
        Attributes {
            entries: Some(entries.into()),
        }
    }

    /// A copy of this map without a value of type `T`.
    #[must_use]
    pub fn without<T: Value>(&self) -> Attributes {
        if self.value::<T>().is_none() {
            return self.clone();
        }
        let key = TypeId::of::<T>();
        let entries: Vec<_> = self
            .entries()
            .iter()
            .filter(|(k, _)| *k != key)
            .cloned()
            .collect();
        Attributes {
            entries: (!entries.is_empty()).then(|| entries.into()),
        }
    }

    /// The value of type `T`, if the map has one.
    pub fn value<T: Value>(&self) -> Option<&T> {
        let key = TypeId::of::<T>();
        self.entries()
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.as_any().downcast_ref::<T>())
    }

    /// How many values the map holds.
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    /// Whether the map holds no value.
    pub fn is_empty(&self) -> bool {
        self.entries().is_empty()
    }
}

impl PartialEq for Attributes {
    fn eq(&self, other: &Attributes) -> bool {
        if let (Some(a), Some(b)) = (&self.entries, &other.entries) {
            if Arc::ptr_eq(a, b) {
                return true;
            }
        }
        self.len() == other.len()
            && self.entries().iter().all(|(k, v)| {
                other
                    .entries()
                    .iter()
                    .find(|(l, _)| l == k)
                    .is_some_and(|(_, w)| v.equals(&**w))
            })
    }
}

impl Eq for Attributes {}

/// Hashes the set of types only (values need not be hashable), which
/// agrees with equality: equal maps hold the same types.
impl Hash for Attributes {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut keys: Vec<TypeId> = self.entries().iter().map(|(k, _)| *k).collect();
        keys.sort_unstable();
        keys.hash(state);
    }
}

impl fmt::Debug for Attributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.entries().iter().map(|(_, v)| v))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct A(u32);
    #[derive(Debug, PartialEq)]
    struct B(&'static str);

    #[test]
    fn typed_values_replace_and_compare() {
        let empty = Attributes::new();
        assert!(empty.is_empty());
        assert_eq!(empty.value::<A>(), None);
        let a = empty.with_value(A(1));
        let ab = a.with_value(B("x"));
        let ba = Attributes::new().with_value(B("x")).with_value(A(1));
        assert_eq!(ab, ba, "order does not matter");
        assert_eq!(ab.value::<A>(), Some(&A(1)));
        assert_eq!(ab.value::<B>(), Some(&B("x")));
        let changed = ab.with_value(A(2));
        assert_ne!(ab, changed);
        assert_eq!(changed.len(), 2);
        assert_eq!(ab.value::<A>(), Some(&A(1)), "the original is unchanged");
        assert_eq!(changed.without::<A>().value::<A>(), None);
        assert_eq!(a.without::<A>(), Attributes::new());
        assert_ne!(a, Attributes::new().with_value(B("x")));
        assert_eq!(format!("{ab:?}"), "{A(1), B(\"x\")}");
    }

    #[test]
    fn equal_maps_hash_alike() {
        use std::collections::hash_map::DefaultHasher;
        let h = |a: &Attributes| {
            let mut s = DefaultHasher::new();
            a.hash(&mut s);
            s.finish()
        };
        let x = Attributes::new().with_value(A(1)).with_value(B("y"));
        let y = Attributes::new().with_value(B("y")).with_value(A(1));
        assert_eq!(h(&x), h(&y));
    }
}
