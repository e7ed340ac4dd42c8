//! The unsafe plumbing: C strings, GError, and RAII owners of libdnf objects.
//!
//! The invariant every `SAFETY` comment here leans on: the raw `DnfSack` and
//! `DnfPackage` pointers these `pub(super)` helpers take come only from `Dnf::sack()`
//! of a live `Dnf` (the sack lives as long as its context) or from a live `PtrArray`
//! (which holds a reference to each package); none leaves the `dnf` module.

#![allow(unsafe_code)]

use super::*;

pub(super) fn cstring(bytes: &[u8]) -> Result<CString> {
    CString::new(bytes).map_err(|_| anyhow!("string contains a NUL byte"))
}

/// # Safety
/// `p` is null or a valid NUL-terminated string.
pub(super) unsafe fn cstr(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        // SAFETY: non-null, and the caller promises a NUL-terminated string; it is
        // copied before this returns, so its lifetime does not matter beyond the call.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

pub(super) fn pkg_str(
    p: *mut sys::DnfPackage,
    get: unsafe extern "C" fn(*mut sys::DnfPackage) -> *const c_char,
) -> String {
    // SAFETY: `p` is a live package (module invariant) and `get` is one of libdnf's
    // `dnf_package_get_*` string getters, which return null or a string owned by the
    // package (or libsolv's string pool), valid while we copy it.
    unsafe { cstr(get(p)) }
}

/// # Safety
/// `v` is null or a NULL-terminated array of g_malloc'd strings, which this frees.
pub(super) unsafe fn take_strv(v: *mut *mut c_char) -> Vec<String> {
    let mut out = Vec::new();
    if v.is_null() {
        return out;
    }
    // SAFETY: the caller promises a NULL-terminated array of strings we own: reading up
    // to the terminator stays in bounds, and each string is copied before the array
    // and its strings are freed, once, by g_strfreev.
    unsafe {
        let mut i = 0;
        while !(*v.add(i)).is_null() {
            out.push(cstr(*v.add(i)));
            i += 1;
        }
        sys::g_strfreev(v);
    }
    out
}

/// Turn a GError out-parameter into an error carrying libdnf's message.
pub(super) fn take_gerror(e: *mut sys::GError) -> anyhow::Error {
    if e.is_null() {
        return anyhow!("libdnf failed without an error message");
    }
    // SAFETY: a non-null GError out-parameter is an error libdnf allocated and handed
    // to us: its message is a valid string, and we free it exactly once, after the copy.
    let msg = unsafe { cstr((*e).message) };
    // SAFETY: as above; `e` is not used after this.
    unsafe { sys::g_error_free(e) };
    anyhow!("{msg}")
}

/// Call a `gboolean f(..., GError **)` function.
pub(super) fn gcall(f: impl FnOnce(*mut *mut sys::GError) -> sys::gboolean) -> Result<()> {
    let mut e = ptr::null_mut();
    if f(&mut e) != 0 {
        if !e.is_null() {
            // SAFETY: a GError set despite success is still ours to free, once.
            unsafe { sys::g_error_free(e) };
        }
        Ok(())
    } else {
        Err(take_gerror(e))
    }
}

/// Call a `T *f(..., GError **)` function.
pub(super) fn gcall_ptr<T>(f: impl FnOnce(*mut *mut sys::GError) -> *mut T) -> Result<*mut T> {
    let mut e = ptr::null_mut();
    let r = f(&mut e);
    if r.is_null() {
        Err(take_gerror(e))
    } else {
        Ok(r)
    }
}

/// An owned reference to a GObject.
pub(super) struct GObject<T>(pub(super) NonNull<T>);

impl<T> GObject<T> {
    /// Takes ownership of one reference (None for null).
    pub(super) fn new(p: *mut T) -> Option<Self> {
        NonNull::new(p).map(GObject)
    }
    pub(super) fn as_ptr(&self) -> *mut T {
        self.0.as_ptr()
    }
}

impl<T> Drop for GObject<T> {
    fn drop(&mut self) {
        // SAFETY: `new` took ownership of exactly one reference to a GObject, which
        // this drop gives back exactly once.
        unsafe { sys::g_object_unref(self.0.as_ptr().cast()) }
    }
}

/// An owned GPtrArray (of DnfPackage, for our uses).
pub(super) struct PtrArray(pub(super) NonNull<sys::GPtrArray>);

impl PtrArray {
    pub(super) fn new(p: *mut sys::GPtrArray) -> Result<Self> {
        NonNull::new(p)
            .map(PtrArray)
            .context("libdnf returned a NULL array")
    }
    pub(super) fn iter(&self) -> impl Iterator<Item = *mut sys::DnfPackage> + '_ {
        // SAFETY: the array is non-null and owned by `self`, so it outlives the borrow.
        let a = unsafe { self.0.as_ref() };
        // SAFETY: `i < len`, so the read stays inside `pdata`; nothing mutates the array
        // while `self` is borrowed.
        (0..a.len as usize).map(move |i| unsafe { *a.pdata.add(i) }.cast())
    }
}

impl Drop for PtrArray {
    fn drop(&mut self) {
        // SAFETY: `self` owns one reference to the array (from libdnf or
        // g_ptr_array_new), dropped once here.
        unsafe { sys::g_ptr_array_unref(self.0.as_ptr()) }
    }
}

/// A package query over the sack.
pub(super) struct Query(pub(super) sys::HyQuery);

impl Query {
    pub(super) fn new(sack: *mut sys::DnfSack, ignore_excludes: bool) -> Self {
        let flags = if ignore_excludes {
            sys::HY_IGNORE_EXCLUDES as i32
        } else {
            0
        };
        // SAFETY: `sack` is live (module invariant); the query is freed by `Drop`.
        Query(unsafe { sys::hy_query_create_flags(sack, flags) })
    }

    pub(super) fn filter(
        &self,
        key: sys::_hy_key_name_e,
        cmp: sys::_hy_comparison_type_e,
        v: &str,
    ) -> Result<()> {
        let c = cstring(v.as_bytes())?;
        // SAFETY: `self.0` is a live query; `c` outlives the call and libdnf copies the
        // match string into the filter.
        let rc = unsafe { sys::hy_query_filter(self.0, key as i32, cmp as i32, c.as_ptr()) };
        ensure!(rc == 0, "libdnf rejected query filter {key}/{cmp} '{v}'");
        Ok(())
    }

    /// Make the query match nothing.
    pub(super) fn clear(&self) {
        // SAFETY: `self.0` is a live query.
        unsafe { sys::hy_query_filter_empty(self.0) };
    }

    pub(super) fn union(&self, other: &Query) {
        // SAFETY: both queries are live; `other` is only read.
        unsafe { sys::hy_query_union(self.0, other.0) }
    }

    pub(super) fn difference(&self, other: &Query) {
        // SAFETY: both queries are live; `other` is only read.
        unsafe { sys::hy_query_difference(self.0, other.0) }
    }

    pub(super) fn is_empty(&self) -> bool {
        // SAFETY: `self.0` is a live query.
        unsafe { sys::hy_query_is_empty(self.0) }
    }

    pub(super) fn run(&self) -> Result<PtrArray> {
        // SAFETY: `self.0` is a live query; the result is a new array we own, and it holds
        // its own references to the packages.
        PtrArray::new(unsafe { sys::hy_query_run(self.0) })
    }

    /// Add the matching packages to the sack's excludes.
    pub(super) fn exclude(&self) -> Result<()> {
        // SAFETY: `self.0` is a live query; the package set returned is ours to free.
        let set = unsafe { sys::hy_query_run_set(self.0) };
        ensure!(!set.is_null(), "libdnf query failed");
        // SAFETY: the query's sack is live (module invariant) and copies the set into
        // its excludes; the set is non-null and freed once, after that.
        unsafe {
            sys::dnf_sack_add_excludes(sys::hy_query_get_sack(self.0), set);
            sys::dnf_packageset_free(set);
        }
        Ok(())
    }
}

impl Drop for Query {
    fn drop(&mut self) {
        // SAFETY: `self` owns the query and frees it once.
        unsafe { sys::hy_query_free(self.0) }
    }
}

/// A depsolver goal.
pub(super) struct Goal(pub(super) NonNull<sys::Goal>);

impl Goal {
    pub(super) fn new(sack: *mut sys::DnfSack) -> Result<Self> {
        Ok(Goal(
            // SAFETY: `sack` is live (module invariant); the goal is freed by `Drop`.
            NonNull::new(unsafe { sys::hy_goal_create(sack) }).context("hy_goal_create")?,
        ))
    }

    /// Ask for `spec` (name, provide, NEVRA, glob); error if nothing matches.
    pub(super) fn install(&self, sack: *mut sys::DnfSack, spec: &str) -> Result<()> {
        let c = cstring(spec.as_bytes())?;
        // SAFETY: `c` outlives the subject that parses it; `sack` is live (module
        // invariant). The subject and the selector are freed once each, after their
        // last use; `matches` owns its array; the goal copies the selector's job.
        unsafe {
            let subject = sys::hy_subject_create(c.as_ptr());
            let selector = sys::hy_subject_get_best_selector(
                subject,
                sack,
                ptr::null_mut(),
                false,
                ptr::null(),
            );
            sys::hy_subject_free(subject);
            let found = PtrArray::new(sys::hy_selector_matches(selector))
                .map(|m| m.iter().next().is_some());
            // The selector is freed below whatever happened.
            let r = match found {
                Ok(true) => gcall(|e| sys::hy_goal_install_selector(self.0.as_ptr(), selector, e)),
                Ok(false) => Err(anyhow!("no package matches '{spec}'")),
                Err(e) => Err(e),
            };
            sys::hy_selector_free(selector);
            r
        }
    }
}

impl Drop for Goal {
    fn drop(&mut self) {
        // SAFETY: `self` owns the goal and frees it once.
        unsafe { sys::hy_goal_free(self.0.as_ptr()) }
    }
}
