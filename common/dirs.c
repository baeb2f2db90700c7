/* dirs.c -- mkdir -p (see dirs.h). */
#include "dirs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "err.h"

int dirs_make(const char *dir, char *err, size_t errlen)
{
    char *p = strdup(dir);
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return ERR_NOMEM;
    }
    int rc = ERR_OK;
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != '\0')
            continue;
        char saved = *s;
        *s = '\0';
        if (mkdir(p, 0700) != 0 && errno != EEXIST && errno != EACCES && errno != EROFS) {
            snprintf(err, errlen, "cannot create directory %s: %s", p, strerror(errno));
            rc = ERR_IO;
            break;
        }
        *s = saved;
        if (saved == '\0')
            break;
    }
    free(p);
    struct stat st;
    if (rc == ERR_OK && stat(dir, &st) != 0) {
        snprintf(err, errlen, "cannot create directory %s: %s", dir, strerror(errno));
        rc = ERR_IO;
    } else if (rc == ERR_OK && !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s exists and is not a directory", dir);
        rc = ERR_IO;
    }
    return rc;
}
