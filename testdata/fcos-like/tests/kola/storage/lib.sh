# Shared by the storage tests; not executable, so not a test itself.
check_md_level() {
    grep -q "$1" /proc/mdstat
}
