/* The backup walk's three hot loops over a million names, without a Python object per name.
 *
 * group(names, buckets) puts each name (a str) into bucket crc32(its file-system bytes) & (buckets - 1),
 * keeping the listing's order within a bucket; buckets is a power of two. It is the same as
 * guard.backup.walk.statpage.group_py: the CRC is zlib's (the same polynomial, computed here so no zlib
 * header is needed).
 *
 * stat_blob(dir_fd, blob) takes the page's names as one bytes object, each name followed by a NUL
 * byte, and returns one bytes object of little-endian (size, mtime_ns, ctime_ns, inode) quadruples
 * of 64-bit integers, one per name in order, or None as soon as a name is not a regular file, cannot
 * be stat-ed or has a time outside 64-bit nanoseconds (the caller then takes the careful path). It is the
 * same as guard.backup.walk.statpage.stat_blob_py, which is the fallback when this is not compiled; the
 * kernel's lookup is most of the cost, and this leaves out Python's per-file objects.
 *
 * read_files(dir_fd, blob, limit) reads the page's new or changed files (names as in stat_blob) the
 * way ObjectStore.add_file reads a small one, and returns a list with, per name in order, either
 * (sha256 hex, content, size, mtime_ns, ctime_ns, inode) or None. Each file is opened under dir_fd
 * with O_NOFOLLOW, fstat-ed, read with one read() of its size + 1 bytes, fstat-ed again and closed;
 * None whenever anything is not the plain case (it cannot be opened, is not a regular file or is over
 * limit bytes, the read does not give exactly its size, the two fstats differ, a time is outside
 * 64-bit nanoseconds), and the caller then reads that file the careful way, which raises or retries
 * as it always did. It is the same as guard.backup.walk.pageread.read_files_py.
 */
#define _GNU_SOURCE /* O_NOATIME */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sha256.h"

static void put64(unsigned char *out, uint64_t value)
{
    for (int i = 0; i < 8; i++) {
        out[i] = (unsigned char)(value >> (8 * i));
    }
}

/* Whether seconds * 1e9 + up to 999999999 ns fits a signed 64-bit integer (years 1678 to 2262);
 * a file outside that goes the careful way, whose digest then takes another form. */
static int fits(time_t seconds)
{
    return seconds >= -9223372035 && seconds <= 9223372035;
}

static PyObject *stat_blob(PyObject *self, PyObject *args)
{
    int dir_fd;
    Py_buffer blob;
    if (!PyArg_ParseTuple(args, "iy*", &dir_fd, &blob)) {
        return NULL;
    }
    const char *start = blob.buf;
    const char *end = start + blob.len;
    Py_ssize_t names = 0;
    for (const char *p = start; p < end; p++) {
        names += (*p == '\0');
    }
    if (blob.len == 0 || end[-1] != '\0') {
        PyBuffer_Release(&blob);
        PyErr_SetString(PyExc_ValueError, "every name must end with a NUL byte");
        return NULL;
    }
    PyObject *result = PyBytes_FromStringAndSize(NULL, names * 32);
    if (result == NULL) {
        PyBuffer_Release(&blob);
        return NULL;
    }
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
    int ok = 1;
    Py_BEGIN_ALLOW_THREADS
    struct stat st;
    for (const char *name = start; name < end; name += strlen(name) + 1, out += 32) {
        if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)
            || !fits(st.st_mtim.tv_sec) || !fits(st.st_ctim.tv_sec)) {
            ok = 0;
            break;
        }
        put64(out, (uint64_t)st.st_size);
        put64(out + 8, (uint64_t)st.st_mtim.tv_sec * 1000000000u + (uint64_t)st.st_mtim.tv_nsec);
        put64(out + 16, (uint64_t)st.st_ctim.tv_sec * 1000000000u + (uint64_t)st.st_ctim.tv_nsec);
        put64(out + 24, (uint64_t)st.st_ino);
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&blob);
    if (!ok) {
        Py_DECREF(result);
        Py_RETURN_NONE;
    }
    return result;
}

/* One file read_files took: where its bytes are in the arena, its stat and its hash. */
struct taken {
    int ok;
    size_t offset;
    size_t size;
    uint64_t mtime_ns;
    uint64_t ctime_ns;
    uint64_t inode;
    char hex[64];
};

static int same_file(const struct stat *a, const struct stat *b)
{
    return a->st_size == b->st_size && a->st_mtim.tv_sec == b->st_mtim.tv_sec
        && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec && a->st_ctim.tv_sec == b->st_ctim.tv_sec
        && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec && a->st_ino == b->st_ino;
}

/* Open an upload as ObjectStore.add_file does, and with O_NOATIME while the kernel allows it (the
 * files' owner, or root): reading a million files then dirties no inode for its access time, which
 * the backup's sync would write out. EPERM (someone else's file) turns it off for the rest of the call. */
static int open_upload(int dir_fd, const char *name, int *noatime)
{
    if (*noatime) {
        int fd = openat(dir_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOATIME);
        if (fd >= 0 || errno != EPERM) {
            return fd;
        }
        *noatime = 0;
    }
    return openat(dir_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
}

/* Read one file into the arena (grown as needed); 0 when it is not the plain case, -1 when out of memory. */
static int take_one(int dir_fd, const char *name, size_t limit, int *noatime, char **arena, size_t *cap,
                    size_t *used, struct taken *out)
{
    int fd = open_upload(dir_fd, name, noatime);
    if (fd < 0) {
        return 0;
    }
    struct stat before, after;
    int status = 0;
    if (fstat(fd, &before) != 0 || !S_ISREG(before.st_mode) || before.st_size < 0
        || (size_t)before.st_size > limit) {
        goto done;
    }
    size_t size = (size_t)before.st_size;
    if (*used + size + 1 > *cap) {
        size_t wanted = (*cap ? *cap : 65536);
        while (*used + size + 1 > wanted) {
            wanted *= 2;
        }
        char *grown = realloc(*arena, wanted);
        if (grown == NULL) {
            status = -1;
            goto done;
        }
        *arena = grown;
        *cap = wanted;
    }
    ssize_t got = read(fd, *arena + *used, size + 1);
    if (got < 0 || (size_t)got != size || fstat(fd, &after) != 0 || !same_file(&before, &after)
        || !fits(after.st_mtim.tv_sec) || !fits(after.st_ctim.tv_sec)) {
        goto done;
    }
    sha256_hex((const unsigned char *)*arena + *used, size, out->hex);
    out->ok = 1;
    out->offset = *used;
    out->size = size;
    out->mtime_ns = (uint64_t)after.st_mtim.tv_sec * 1000000000u + (uint64_t)after.st_mtim.tv_nsec;
    out->ctime_ns = (uint64_t)after.st_ctim.tv_sec * 1000000000u + (uint64_t)after.st_ctim.tv_nsec;
    out->inode = (uint64_t)after.st_ino;
    *used += size;
    status = 1;
done:
    close(fd);
    return status;
}

static PyObject *taken_tuple(const struct taken *t, const char *arena)
{
    return Py_BuildValue("(s#y#LLLK)", t->hex, (Py_ssize_t)64, arena + t->offset, (Py_ssize_t)t->size,
                         (long long)t->size, (long long)t->mtime_ns, (long long)t->ctime_ns,
                         (unsigned long long)t->inode);
}

static PyObject *read_files(PyObject *self, PyObject *args)
{
    int dir_fd;
    Py_buffer blob;
    Py_ssize_t limit;
    if (!PyArg_ParseTuple(args, "iy*n", &dir_fd, &blob, &limit)) {
        return NULL;
    }
    const char *start = blob.buf;
    const char *end = start + blob.len;
    if (blob.len == 0 || end[-1] != '\0' || limit < 0) {
        PyBuffer_Release(&blob);
        PyErr_SetString(PyExc_ValueError, "every name must end with a NUL byte; limit must be >= 0");
        return NULL;
    }
    Py_ssize_t names = 0;
    for (const char *p = start; p < end; p++) {
        names += (*p == '\0');
    }
    struct taken *taken = calloc((size_t)names, sizeof(struct taken));
    if (taken == NULL) {
        PyBuffer_Release(&blob);
        return PyErr_NoMemory();
    }
    char *arena = NULL;
    size_t cap = 0, used = 0;
    int failed = 0, noatime = 1;
    Py_BEGIN_ALLOW_THREADS
    Py_ssize_t i = 0;
    for (const char *name = start; name < end; name += strlen(name) + 1, i++) {
        if (take_one(dir_fd, name, (size_t)limit, &noatime, &arena, &cap, &used, &taken[i]) < 0) {
            failed = 1;
            break;
        }
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&blob);
    PyObject *result = failed ? PyErr_NoMemory() : PyList_New(names);
    for (Py_ssize_t j = 0; result != NULL && j < names; j++) {
        PyObject *item = taken[j].ok ? taken_tuple(&taken[j], arena) : Py_NewRef(Py_None);
        if (item == NULL) {
            Py_CLEAR(result);
            break;
        }
        PyList_SET_ITEM(result, j, item);
    }
    free(arena);
    free(taken);
    return result;
}

static uint32_t crc_table[256];

static void crc_init(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) {
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        }
        crc_table[n] = c;
    }
}

static uint32_t crc32_of(const unsigned char *data, Py_ssize_t len)
{
    uint32_t c = 0xFFFFFFFFu;
    for (Py_ssize_t i = 0; i < len; i++) {
        c = crc_table[(c ^ data[i]) & 0xFF] ^ (c >> 8);
    }
    return c ^ 0xFFFFFFFFu;
}

static PyObject *group(PyObject *self, PyObject *args)
{
    PyObject *names;
    Py_ssize_t buckets;
    if (!PyArg_ParseTuple(args, "O!n", &PyList_Type, &names, &buckets)) {
        return NULL;
    }
    if (buckets < 1 || (buckets & (buckets - 1)) != 0) {
        PyErr_SetString(PyExc_ValueError, "buckets must be a power of two");
        return NULL;
    }
    PyObject *result = PyList_New(buckets);
    if (result == NULL) {
        return NULL;
    }
    for (Py_ssize_t b = 0; b < buckets; b++) {
        PyObject *bucket = PyList_New(0);
        if (bucket == NULL) {
            Py_DECREF(result);
            return NULL;
        }
        PyList_SET_ITEM(result, b, bucket);
    }
    Py_ssize_t count = PyList_GET_SIZE(names);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *name = PyList_GET_ITEM(names, i);
        if (!PyUnicode_Check(name)) {
            Py_DECREF(result);
            PyErr_SetString(PyExc_TypeError, "names must be str");
            return NULL;
        }
        uint32_t crc;
        if (PyUnicode_IS_ASCII(name)) {
            crc = crc32_of(PyUnicode_DATA(name), PyUnicode_GET_LENGTH(name));
        } else {
            PyObject *encoded = PyUnicode_AsEncodedString(name, "utf-8", "surrogateescape");
            if (encoded == NULL) {
                Py_DECREF(result);
                return NULL;
            }
            crc = crc32_of((const unsigned char *)PyBytes_AS_STRING(encoded), PyBytes_GET_SIZE(encoded));
            Py_DECREF(encoded);
        }
        if (PyList_Append(PyList_GET_ITEM(result, crc & (uint32_t)(buckets - 1)), name) != 0) {
            Py_DECREF(result);
            return NULL;
        }
    }
    return result;
}

static PyMethodDef methods[] = {
    {"group", group, METH_VARARGS,
     "group(names, buckets) -> list[list[str]]: each name into bucket crc32(bytes) & (buckets - 1)."},
    {"stat_blob", stat_blob, METH_VARARGS,
     "stat_blob(dir_fd, blob) -> bytes | None: lstat each NUL-terminated name under dir_fd."},
    {"read_files", read_files, METH_VARARGS,
     "read_files(dir_fd, blob, limit) -> list[tuple | None]: read and hash each small regular file."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_statpage", NULL, -1, methods};

PyMODINIT_FUNC PyInit__statpage(void)
{
    crc_init();
    return PyModule_Create(&module);
}
