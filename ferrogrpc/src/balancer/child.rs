//! Child policies: the bookkeeping of a policy that holds other policies
//! (gRPC-Go's `balancergroup`, used by xDS's priority and weighted_target).
//!
//! A [`ChildGroup`] builds each child with a [`Helper`] of its own (see
//! [`Helper::with_hooks`]), remembers which child created which subchannel
//! so the parent can pass subchannel states on, and keeps each child's
//! latest state and picker. Whenever a child publishes, the group calls
//! the parent's aggregation function with every child's state and
//! publishes what it returns, so the parent decides how children combine
//! (the first READY one for priority, a weighted choice for
//! weighted_target, a header for a router).
//!
//! ```text
//!  channel ──▶ parent Balancer ──update / subchannel_state──▶ ChildGroup ──▶ child Balancers
//!     ▲                                                          │ hooks        │ Helper::update_state
//!     └──────────── aggregate(children's states) ◀───────────────┴──────────────┘
//! ```
//!
//! All of it runs under the balancer contract of the [module](super): the
//! group's methods are called from the parent's [`Balancer`] methods (the
//! control task); children may publish from anywhere, so the children's
//! states sit behind a mutex held only while aggregating.

use std::{
    collections::HashMap,
    fmt,
    hash::Hash,
    sync::{Arc, Mutex, MutexGuard},
};

use super::{
    Balancer, Builder, ClientConnState, Helper, HelperHooks, Picker, QueuePicker, SubConn,
    SubConnState,
};
use crate::{connectivity::State, status::Status};

/// One child's latest published state, as the aggregation function sees it.
#[derive(Clone)]
pub struct ChildState<K> {
    /// The child's key in the group.
    pub key: K,
    /// Its connectivity state (CONNECTING until it first publishes).
    pub state: State,
    /// Its picker (a [`QueuePicker`] until it first publishes).
    pub picker: Arc<dyn Picker>,
}

impl<K: fmt::Debug> fmt::Debug for ChildState<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildState")
            .field("key", &self.key)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// Combines the children's states into the parent's state and picker.
pub type Aggregate<K> = dyn Fn(&[ChildState<K>]) -> (State, Arc<dyn Picker>) + Send + Sync;

/// A parent policy's children, keyed by `K`; see the [module docs](self).
pub struct ChildGroup<K> {
    shared: Arc<Group<K>>,
    balancers: HashMap<K, Box<dyn Balancer>>,
}

struct Group<K> {
    helper: Helper,
    aggregate: Box<Aggregate<K>>,
    inner: Mutex<GroupState<K>>,
}

struct GroupState<K> {
    /// In the order the children were added.
    children: Vec<ChildState<K>>,
    /// Which child created each subchannel.
    owners: HashMap<SubConn, K>,
    /// Non-zero while the parent is changing many children: publish once
    /// after (a depth, so batches nest).
    batching: u32,
}

impl<K> Group<K> {
    fn lock(&self) -> MutexGuard<'_, GroupState<K>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes the aggregate of the children's states.
    fn publish(&self, state: &GroupState<K>) {
        if state.batching > 0 {
            return;
        }
        let (s, picker) = (self.aggregate)(&state.children);
        self.helper.update_state(s, picker);
    }
}

/// The hooks of one child's helper.
struct ChildHooks<K> {
    key: K,
    group: std::sync::Weak<Group<K>>,
}

impl<K: Clone + Eq + Hash + Send + Sync + 'static> HelperHooks for ChildHooks<K> {
    fn update_state(&self, state: State, picker: Arc<dyn Picker>) {
        let Some(group) = self.group.upgrade() else {
            return;
        };
        let mut inner = group.lock();
        let Some(child) = inner.children.iter_mut().find(|c| c.key == self.key) else {
            return; // removed
        };
        child.state = state;
        child.picker = picker;
        group.publish(&inner);
    }

    fn new_subconn(&self, subconn: &SubConn) {
        if let Some(group) = self.group.upgrade() {
            group
                .lock()
                .owners
                .insert(subconn.clone(), self.key.clone());
        }
    }
}

impl<K: Clone + Eq + Hash + Send + Sync + 'static> ChildGroup<K> {
    /// An empty group publishing through `helper` (the parent's) what
    /// `aggregate` makes of the children's states. `aggregate` is called
    /// with the group's lock held: it must be quick and must not call back
    /// into the group.
    pub fn new(
        helper: Helper,
        aggregate: impl Fn(&[ChildState<K>]) -> (State, Arc<dyn Picker>) + Send + Sync + 'static,
    ) -> ChildGroup<K> {
        ChildGroup {
            shared: Arc::new(Group {
                helper,
                aggregate: Box::new(aggregate),
                inner: Mutex::new(GroupState {
                    children: Vec::new(),
                    owners: HashMap::new(),
                    batching: 0,
                }),
            }),
            balancers: HashMap::new(),
        }
    }

    /// Adds a child built by `builder` under `key` (replacing, and closing,
    /// any child of that key). It starts CONNECTING with a queueing picker
    /// until it publishes.
    pub fn add(&mut self, key: K, builder: &dyn Builder) {
        self.remove(&key);
        {
            let mut inner = self.shared.lock();
            inner.children.push(ChildState {
                key: key.clone(),
                state: State::Connecting,
                picker: Arc::new(QueuePicker),
            });
        }
        let hooks = ChildHooks {
            key: key.clone(),
            group: Arc::downgrade(&self.shared),
        };
        let helper = self.shared.helper.with_hooks(Arc::new(hooks));
        self.balancers.insert(key, builder.build(helper));
    }

    /// Removes the child `key`: it is closed and its subchannels shut
    /// down. Returns whether there was one.
    pub fn remove(&mut self, key: &K) -> bool {
        let Some(balancer) = self.balancers.remove(key) else {
            return false;
        };
        drop(balancer);
        let mut inner = self.shared.lock();
        inner.children.retain(|c| c.key != *key);
        inner.owners.retain(|subconn, owner| {
            let keep = owner != key;
            if !keep {
                subconn.shutdown();
            }
            keep
        });
        self.shared.publish(&inner);
        true
    }

    /// The keys of the children, in the order they were added.
    pub fn keys(&self) -> Vec<K> {
        self.shared
            .lock()
            .children
            .iter()
            .map(|c| c.key.clone())
            .collect()
    }

    /// Passes a resolver state to the child `key`.
    ///
    /// # Errors
    /// The child's error, or a message if there is no such child.
    pub fn update_client_conn_state(
        &mut self,
        key: &K,
        state: ClientConnState,
    ) -> Result<(), String> {
        match self.balancers.get_mut(key) {
            Some(balancer) => balancer.update_client_conn_state(state),
            None => Err("no such child policy".into()),
        }
    }

    /// Whether there is a child `key`.
    pub fn contains(&self, key: &K) -> bool {
        self.balancers.contains_key(key)
    }

    /// How many children there are.
    pub fn len(&self) -> usize {
        self.balancers.len()
    }

    /// Whether there are no children.
    pub fn is_empty(&self) -> bool {
        self.balancers.is_empty()
    }

    /// Runs `f`, which may add, update and remove children, and publishes
    /// the aggregate once at the end instead of after each child's change
    /// (gRPC-Go's endpointsharding holds child updates back the same way):
    /// for a parent applying a resolver update to many children, so calls
    /// never see a picker of half the update and the aggregation runs once.
    pub fn batch<R>(&mut self, f: impl FnOnce(&mut Self) -> R) -> R {
        self.shared.lock().batching += 1;
        let result = f(self);
        let mut inner = self.shared.lock();
        inner.batching -= 1;
        self.shared.publish(&inner);
        result
    }

    /// Passes a resolver error to every child.
    pub fn resolver_error(&mut self, error: &Status) {
        self.batch_children(|balancers| {
            for balancer in balancers.values_mut() {
                balancer.resolver_error(error.clone());
            }
        });
    }

    /// Passes a subchannel's state to the child that created it. Returns
    /// false when no child of this group did.
    pub fn subchannel_state(&mut self, subconn: &SubConn, state: SubConnState) -> bool {
        let owner = self.shared.lock().owners.get(subconn).cloned();
        let Some(balancer) = owner.and_then(|key| self.balancers.get_mut(&key)) else {
            return false;
        };
        if state.state == State::Shutdown {
            self.shared.lock().owners.remove(subconn);
        }
        balancer.subchannel_state(subconn, state);
        true
    }

    /// Asks every child to leave IDLE.
    pub fn exit_idle(&mut self) {
        self.batch_children(|balancers| {
            for balancer in balancers.values_mut() {
                balancer.exit_idle();
            }
        });
    }

    /// Runs `f` on the children, publishing once at the end rather than
    /// after each child's update.
    fn batch_children(&mut self, f: impl FnOnce(&mut HashMap<K, Box<dyn Balancer>>)) {
        self.batch(|group| f(&mut group.balancers));
    }
}

impl<K> Drop for ChildGroup<K> {
    fn drop(&mut self) {
        // The children first, while their subchannels still exist.
        self.balancers.clear();
    }
}

impl<K: fmt::Debug> fmt::Debug for ChildGroup<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildGroup")
            .field("children", &self.balancers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}
