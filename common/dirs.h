/* dirs.h -- creating a directory and its missing parents (mkdir -p), for the emulator's data dir. */
#ifndef IOTHUB_DIRS_H
#define IOTHUB_DIRS_H

#include <stddef.h>

/* Creates dir and any missing parents with mode 0700 (a parent that exists, or that cannot be created because
 * it is not ours to create, is passed over), then checks dir is a directory. Returns ERR_OK, or ERR_IO /
 * ERR_NOMEM with one line in err: "cannot create directory D: reason" or "D exists and is not a directory". */
int dirs_make(const char *dir, char *err, size_t errlen);

#endif
