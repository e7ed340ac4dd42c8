#include <libdnf/libdnf.h>
/* rpm's own version order (librpmio), for comparing EVRs as rpm and dnf do. */
#include <rpm/rpmver.h>
