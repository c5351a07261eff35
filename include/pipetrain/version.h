/* pipetrain/version.h — the library's version, for programs that link libpipetrain. */
#ifndef PIPETRAIN_VERSION_H
#define PIPETRAIN_VERSION_H

/* "MAJOR.MINOR.PATCH" of the linked library. Never NULL; thread-safe. */
const char *pt_version(void);

#endif
