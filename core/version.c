#include "pipetrain/version.h"

const char *pt_version(void) { return PT_VERSION_STRING; }
