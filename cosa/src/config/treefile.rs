//! rpm-ostree treefiles (owned by the treefile work; placeholder).
