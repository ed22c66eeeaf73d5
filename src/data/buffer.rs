//! The storage of a sparse matrix's values and column indices: owned by the
//! engine, or borrowed from memory a caller keeps alive.
//!
//! Why: the Python package hands over a scipy CSR matrix that the caller's
//! AnnData holds anyway. Copying it into the engine would cost the
//! matrix's size again for as long as the inputs live. A [`Values`] reads like a slice
//! (`Deref<Target = [T]>`); the few places that grow a matrix in place call
//! [`Values::to_mut`], which copies a borrowed buffer first
//! (copy-on-write), so borrowed memory is never written.

use std::any::Any;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// Whatever keeps borrowed memory alive (a numpy array's reference); it is
/// dropped when the last [`Values`] borrowing from it is.
pub type Owner = Arc<dyn Any + Send + Sync>;

/// A read-only run of `T`, owned or borrowed (see the module doc).
pub struct Values<T: 'static>(Repr<T>);

enum Repr<T> {
    Owned(Vec<T>),
    Borrowed { ptr: *const T, len: usize, _owner: Owner },
}

// SAFETY: a borrowed run is only ever read (mutation goes through
// `to_mut`, which copies first), and its owner is Send + Sync; so sharing
// or sending it is as safe as sharing or sending a `&[T]`.
unsafe impl<T: Sync> Send for Values<T> {}
unsafe impl<T: Sync> Sync for Values<T> {}

impl<T: 'static> Values<T> {
    /// Borrows `len` values at `ptr`, kept alive by `owner`.
    ///
    /// # Safety
    /// `ptr` must be non-null, aligned for `T` and valid for reads of `len`
    /// values for as long as `owner` lives, and nothing may write to that
    /// memory meanwhile.
    pub unsafe fn borrowed(ptr: *const T, len: usize, owner: Owner) -> Self {
        Values(Repr::Borrowed { ptr, len, _owner: owner })
    }

    /// Whether the values live in someone else's memory.
    pub fn is_borrowed(&self) -> bool {
        matches!(self.0, Repr::Borrowed { .. })
    }

    /// The values as a vector to change; a borrowed run is copied first.
    pub fn to_mut(&mut self) -> &mut Vec<T>
    where
        T: Clone,
    {
        if let Repr::Borrowed { .. } = self.0 {
            self.0 = Repr::Owned(self.deref().to_vec());
        }
        match &mut self.0 {
            Repr::Owned(v) => v,
            Repr::Borrowed { .. } => unreachable!("copied just above"),
        }
    }

    /// The values as an owned vector (a copy only when borrowed).
    pub fn into_vec(self) -> Vec<T>
    where
        T: Clone,
    {
        match self.0 {
            Repr::Owned(v) => v,
            Repr::Borrowed { .. } => self.deref().to_vec(),
        }
    }
}

impl<T> Deref for Values<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match &self.0 {
            Repr::Owned(v) => v,
            // SAFETY: the constructor's contract: valid, unaliased by
            // writers, alive while `_owner` (held here) is.
            Repr::Borrowed { ptr, len, .. } => unsafe { std::slice::from_raw_parts(*ptr, *len) },
        }
    }
}

impl<'a, T> IntoIterator for &'a Values<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.deref().iter()
    }
}

impl<T> From<Vec<T>> for Values<T> {
    fn from(v: Vec<T>) -> Self {
        Values(Repr::Owned(v))
    }
}

impl<T> FromIterator<T> for Values<T> {
    fn from_iter<I: IntoIterator<Item = T>>(it: I) -> Self {
        Values(Repr::Owned(it.into_iter().collect()))
    }
}

impl<T> Default for Values<T> {
    fn default() -> Self {
        Values(Repr::Owned(Vec::new()))
    }
}

/// A clone of a borrowed run borrows too (it shares the owner).
impl<T: Clone> Clone for Values<T> {
    fn clone(&self) -> Self {
        match &self.0 {
            Repr::Owned(v) => Values(Repr::Owned(v.clone())),
            Repr::Borrowed { ptr, len, _owner } => Values(Repr::Borrowed { ptr: *ptr, len: *len, _owner: _owner.clone() }),
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Values<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.deref(), f)
    }
}

/// Equal when the values are, wherever they live.
impl<T: PartialEq> PartialEq for Values<T> {
    fn eq(&self, other: &Self) -> bool {
        self.deref() == other.deref()
    }
}

impl<T: PartialEq> PartialEq<Vec<T>> for Values<T> {
    fn eq(&self, other: &Vec<T>) -> bool {
        self.deref() == other.as_slice()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_borrowed_run_reads_in_place_and_is_copied_before_a_write() {
        let backing: Arc<Vec<f32>> = Arc::new(vec![1.0, 2.0, 3.0]);
        let owner: Owner = backing.clone();
        let mut v = unsafe { Values::borrowed(backing.as_ptr(), backing.len(), owner) };
        assert!(v.is_borrowed());
        assert_eq!(v.as_ptr(), backing.as_ptr(), "no copy on read");
        let c = v.clone();
        assert_eq!(c.as_ptr(), backing.as_ptr(), "a clone borrows too");
        v.to_mut().push(4.0);
        assert!(!v.is_borrowed());
        assert_eq!(*backing, vec![1.0, 2.0, 3.0], "the owner's memory is never written");
        assert_eq!(v, vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(c.into_vec(), vec![1.0, 2.0, 3.0]);
        // Three Arcs held the backing (it, `c` before into_vec, `v` before the write): one is left.
        assert_eq!(Arc::strong_count(&backing), 1);
    }

    #[test]
    fn owned_values_behave_like_the_vector() {
        let mut v: Values<u32> = vec![5, 6].into();
        assert!(!v.is_borrowed());
        v.to_mut().push(7);
        assert_eq!(&*v, &[5, 6, 7]);
        assert_eq!(Values::<u32>::default().len(), 0);
    }
}
