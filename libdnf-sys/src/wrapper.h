#include <libdnf/libdnf.h>
