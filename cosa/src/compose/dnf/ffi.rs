//! The unsafe plumbing: C strings, GError, and RAII owners of libdnf objects.

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
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

pub(super) fn pkg_str(
    p: *mut sys::DnfPackage,
    get: unsafe extern "C" fn(*mut sys::DnfPackage) -> *const c_char,
) -> String {
    unsafe { cstr(get(p)) }
}

/// # Safety
/// `v` is null or a NULL-terminated array of g_malloc'd strings, which this frees.
pub(super) unsafe fn take_strv(v: *mut *mut c_char) -> Vec<String> {
    let mut out = Vec::new();
    if v.is_null() {
        return out;
    }
    let mut i = 0;
    while !(*v.add(i)).is_null() {
        out.push(cstr(*v.add(i)));
        i += 1;
    }
    sys::g_strfreev(v);
    out
}

/// Turn a GError out-parameter into an error carrying libdnf's message.
pub(super) fn take_gerror(e: *mut sys::GError) -> anyhow::Error {
    if e.is_null() {
        return anyhow!("libdnf failed without an error message");
    }
    let msg = unsafe { cstr((*e).message) };
    unsafe { sys::g_error_free(e) };
    anyhow!("{msg}")
}

/// Call a `gboolean f(..., GError **)` function.
pub(super) fn gcall(f: impl FnOnce(*mut *mut sys::GError) -> sys::gboolean) -> Result<()> {
    let mut e = ptr::null_mut();
    if f(&mut e) != 0 {
        if !e.is_null() {
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
        unsafe { sys::g_object_unref(self.0.as_ptr().cast()) }
    }
}

/// An owned GPtrArray (of DnfPackage, for our uses).
pub(super) struct PtrArray(pub(super) NonNull<sys::GPtrArray>);

impl PtrArray {
    pub(super) fn new(p: *mut sys::GPtrArray) -> Self {
        PtrArray(NonNull::new(p).expect("libdnf returned a NULL array"))
    }
    pub(super) fn iter(&self) -> impl Iterator<Item = *mut sys::DnfPackage> + '_ {
        let a = unsafe { self.0.as_ref() };
        (0..a.len as usize).map(move |i| unsafe { *a.pdata.add(i) }.cast())
    }
}

impl Drop for PtrArray {
    fn drop(&mut self) {
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
        Query(unsafe { sys::hy_query_create_flags(sack, flags) })
    }

    pub(super) fn filter(
        &self,
        key: sys::_hy_key_name_e,
        cmp: sys::_hy_comparison_type_e,
        v: &str,
    ) -> Result<()> {
        let c = cstring(v.as_bytes())?;
        let rc = unsafe { sys::hy_query_filter(self.0, key as i32, cmp as i32, c.as_ptr()) };
        ensure!(rc == 0, "libdnf rejected query filter {key}/{cmp} '{v}'");
        Ok(())
    }

    /// Make the query match nothing.
    pub(super) fn clear(&self) {
        unsafe { sys::hy_query_filter_empty(self.0) };
    }

    pub(super) fn union(&self, other: &Query) {
        unsafe { sys::hy_query_union(self.0, other.0) }
    }

    pub(super) fn difference(&self, other: &Query) {
        unsafe { sys::hy_query_difference(self.0, other.0) }
    }

    pub(super) fn is_empty(&self) -> bool {
        unsafe { sys::hy_query_is_empty(self.0) }
    }

    pub(super) fn run(&self) -> PtrArray {
        PtrArray::new(unsafe { sys::hy_query_run(self.0) })
    }

    /// Add the matching packages to the sack's excludes.
    pub(super) fn exclude(&self) -> Result<()> {
        let set = unsafe { sys::hy_query_run_set(self.0) };
        ensure!(!set.is_null(), "libdnf query failed");
        unsafe {
            sys::dnf_sack_add_excludes(sys::hy_query_get_sack(self.0), set);
            sys::dnf_packageset_free(set);
        }
        Ok(())
    }
}

impl Drop for Query {
    fn drop(&mut self) {
        unsafe { sys::hy_query_free(self.0) }
    }
}

/// A depsolver goal.
pub(super) struct Goal(pub(super) NonNull<sys::Goal>);

impl Goal {
    pub(super) fn new(sack: *mut sys::DnfSack) -> Result<Self> {
        Ok(Goal(
            NonNull::new(unsafe { sys::hy_goal_create(sack) }).context("hy_goal_create")?,
        ))
    }

    /// Ask for `spec` (name, provide, NEVRA, glob); error if nothing matches.
    pub(super) fn install(&self, sack: *mut sys::DnfSack, spec: &str) -> Result<()> {
        let c = cstring(spec.as_bytes())?;
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
            let matches = PtrArray::new(sys::hy_selector_matches(selector));
            let found = matches.iter().next().is_some();
            let r = if found {
                gcall(|e| sys::hy_goal_install_selector(self.0.as_ptr(), selector, e))
            } else {
                Err(anyhow!("no package matches '{spec}'"))
            };
            sys::hy_selector_free(selector);
            r
        }
    }
}

impl Drop for Goal {
    fn drop(&mut self) {
        unsafe { sys::hy_goal_free(self.0.as_ptr()) }
    }
}
