/* The files check's two hot loops over a million paths, without a Python object per path.
 *
 * list_folder(path, prefix) reads one folder and returns (files, others): files is one bytes value,
 * prefix + name of every regular file (not followed through a symlink) each followed by a NUL byte;
 * others is a list of (name, is_folder) for every other entry, names as os.fsdecode spells them. It is
 * guard.fs.pathsets.list_folder_py (os.scandir and DirEntry.is_file(follow_symlinks=False)) without a
 * DirEntry and a str per file: the kernel's getdents is then most of the cost.
 *
 * StoredIndex holds the distinct stored paths as bytes in one hash table: add_copy(chunk) takes whole
 * lines of COPY's text format (a line holding a backslash is unescaped first, as
 * guard.db.psqlcopy.unescape does), add_values(list) takes str values. match(blob) looks up each
 * NUL-terminated walked path, marks the stored path it names, and keeps the names that name none;
 * unmatched() and unreferenced() then return only what one side has and the other lacks, the few
 * thousand paths the check looks at closely. A walked name holding a backslash is never matched (such
 * a stored path is unsafe and never a reference), as in guard.fs.pathsets.StoredIndexPy, the pure-
 * Python twin used when this is not compiled.
 *
 * Bytes compare as their str do: stored values are UTF-8, and os.fsdecode (UTF-8, surrogateescape) of
 * a walked name equals a stored str exactly when the name's bytes are that str's UTF-8 (a name that is
 * not UTF-8 decodes to surrogates, which no stored str holds). The Python side uses this module only
 * where the file-system encoding is UTF-8.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

/* A growable byte buffer, filled without the GIL. */
typedef struct {
    char *data;
    size_t len, cap;
} Buffer;

static int buffer_put(Buffer *b, const char *bytes, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1 << 16;
        while (cap < b->len + n) {
            cap *= 2;
        }
        char *data = realloc(b->data, cap);
        if (data == NULL) {
            return -1;
        }
        b->data = data;
        b->cap = cap;
    }
    memcpy(b->data + b->len, bytes, n);
    b->len += n;
    return 0;
}

/* ---- list_folder ---- */

static PyObject *others_list(const Buffer *others)
{
    /* others holds, per entry: one byte (1 for a folder, 0 otherwise), the name, a NUL. */
    PyObject *list = PyList_New(0);
    if (list == NULL) {
        return NULL;
    }
    for (size_t at = 0; at < others->len;) {
        const char *name = others->data + at + 1;
        size_t n = strlen(name);
        PyObject *item = Py_BuildValue(
            "(NO)", PyUnicode_DecodeFSDefaultAndSize(name, (Py_ssize_t)n),
            others->data[at] ? Py_True : Py_False);
        if (item == NULL || PyList_Append(list, item) != 0) {
            Py_XDECREF(item);
            Py_DECREF(list);
            return NULL;
        }
        Py_DECREF(item);
        at += n + 2;
    }
    return list;
}

static PyObject *list_folder(PyObject *self, PyObject *args)
{
    PyObject *path_bytes, *prefix_bytes;
    if (!PyArg_ParseTuple(args, "O&O&", PyUnicode_FSConverter, &path_bytes, PyUnicode_FSConverter,
                          &prefix_bytes)) {
        return NULL;
    }
    const char *path = PyBytes_AS_STRING(path_bytes);
    const char *prefix = PyBytes_AS_STRING(prefix_bytes);
    size_t prefix_len = (size_t)PyBytes_GET_SIZE(prefix_bytes);
    Buffer files = {0}, others = {0};
    int failed_errno = 0, no_memory = 0;
    Py_BEGIN_ALLOW_THREADS
    DIR *dir = opendir(path);
    if (dir == NULL) {
        failed_errno = errno;
    } else {
        int fd = dirfd(dir);
        for (;;) {
            errno = 0;
            struct dirent *entry = readdir(dir);
            if (entry == NULL) {
                failed_errno = errno;
                break;
            }
            const char *name = entry->d_name;
            if (name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'))) {
                continue;
            }
            unsigned char type = entry->d_type;
            if (type == DT_UNKNOWN) { /* as os.scandir does: ask lstat; a vanished entry is neither */
                struct stat st;
                if (fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
                    type = DT_UNKNOWN;
                } else if (S_ISREG(st.st_mode)) {
                    type = DT_REG;
                } else if (S_ISDIR(st.st_mode)) {
                    type = DT_DIR;
                }
            }
            size_t n = strlen(name) + 1;
            int bad;
            if (type == DT_REG) {
                bad = buffer_put(&files, prefix, prefix_len) || buffer_put(&files, name, n);
            } else {
                char is_dir = type == DT_DIR;
                bad = buffer_put(&others, &is_dir, 1) || buffer_put(&others, name, n);
            }
            if (bad) {
                no_memory = 1;
                break;
            }
        }
        closedir(dir);
    }
    Py_END_ALLOW_THREADS
    PyObject *result = NULL;
    if (no_memory) {
        PyErr_NoMemory();
    } else if (failed_errno) {
        errno = failed_errno;
        PyErr_SetFromErrnoWithFilename(PyExc_OSError, path);
    } else {
        PyObject *other_list = others_list(&others);
        if (other_list != NULL) {
            result = Py_BuildValue("(y#N)", files.data ? files.data : "", (Py_ssize_t)files.len, other_list);
        }
    }
    free(files.data);
    free(others.data);
    Py_DECREF(path_bytes);
    Py_DECREF(prefix_bytes);
    return result;
}

/* ---- StoredIndex ---- */

/* A slot: the path's bytes live in the index's arena; len's top bit says a walked file matched it. */
typedef struct {
    const char *bytes;
    uint32_t hash;
    uint32_t len;
} Slot;

#define MATCHED 0x80000000u
#define ARENA_BLOCK ((size_t)8 << 20)
#define HUGE_PAGE ((size_t)2 << 20)
/* Paths looked up at once: each lookup is two cache misses (its slot, then its bytes) in tables of tens
 * of megabytes, so the slots of a batch are prefetched together, then their bytes, then compared. */
#define BATCH 16

typedef struct Block {
    struct Block *next;
    size_t used, cap, size;
    char data[];
} Block;

typedef struct {
    PyObject_HEAD
    Slot *slots;
    size_t mask, used;
    Block *arena;
    Buffer unreferenced; /* walked paths that matched nothing, each followed by a NUL */
    Py_ssize_t rows, walked;
} StoredIndex;

static uint64_t seed;

/* Zeroed memory on huge-page boundaries, offered to the kernel's transparent huge pages: the lookups
 * land anywhere in tens of megabytes, and 4 KiB pages cost a TLB miss on top of the cache miss. */
static void *big_alloc(size_t size)
{
    /* whole pages: the tail given back below must start on a page, or munmap refuses it (EINVAL)
     * and up to 2 MiB stay mapped; munmap(block, size) later rounds its length up the same way */
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size = (size + page - 1) & ~(page - 1);
    size_t padded = size + HUGE_PAGE;
    char *raw = mmap(NULL, padded, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) {
        return NULL;
    }
    char *aligned = (char *)(((uintptr_t)raw + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    if (aligned > raw) {
        munmap(raw, (size_t)(aligned - raw));
    }
    size_t tail = (size_t)(raw + padded - (aligned + size));
    if (tail) {
        munmap(aligned + size, tail);
    }
#ifdef MADV_HUGEPAGE
    madvise(aligned, size, MADV_HUGEPAGE);
#endif
    return aligned;
}

static uint32_t hash_of(const char *p, size_t n)
{
    uint64_t h = seed ^ (n * 0x9E3779B97F4A7C15ull);
    while (n >= 8) {
        uint64_t k;
        memcpy(&k, p, 8);
        h = (h ^ k) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 31;
        p += 8;
        n -= 8;
    }
    uint64_t k = 0;
    memcpy(&k, p, n);
    h = (h ^ k) * 0x94d049bb133111ebull;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 32;
    return (uint32_t)h;
}

static char *arena_take(StoredIndex *ix, size_t n)
{
    if (ix->arena == NULL || ix->arena->used + n > ix->arena->cap) {
        size_t size = sizeof(Block) + n > ARENA_BLOCK ? sizeof(Block) + n : ARENA_BLOCK;
        Block *block = big_alloc(size);
        if (block == NULL) {
            return NULL;
        }
        block->next = ix->arena;
        block->used = 0;
        block->cap = size - sizeof(Block);
        block->size = size;
        ix->arena = block;
    }
    char *at = ix->arena->data + ix->arena->used;
    ix->arena->used += n;
    return at;
}

/* The slot holding these bytes, or the empty slot where they would go, probing from slot `at`. */
static Slot *find_from(const StoredIndex *ix, size_t at, const char *bytes, size_t n, uint32_t hash)
{
    for (;; at = (at + 1) & ix->mask) {
        Slot *slot = &ix->slots[at];
        if (slot->bytes == NULL) {
            return slot;
        }
        if (slot->hash == hash && (slot->len & ~MATCHED) == n && memcmp(slot->bytes, bytes, n) == 0) {
            return slot;
        }
    }
}

/* The first slot from the hash's home that is empty or has the same hash: where a lookup compares. */
static size_t first_candidate(const StoredIndex *ix, uint32_t hash)
{
    size_t at = hash & ix->mask;
    while (ix->slots[at].bytes != NULL && ix->slots[at].hash != hash) {
        at = (at + 1) & ix->mask;
    }
    return at;
}

static void free_slots(StoredIndex *ix)
{
    if (ix->slots != NULL) {
        munmap(ix->slots, (ix->mask + 1) * sizeof(Slot));
    }
    ix->slots = NULL;
    ix->mask = 0;
}

/* Make room for `more` paths at a load of at most one half. */
static int reserve(StoredIndex *ix, size_t more)
{
    size_t size = ix->slots ? ix->mask + 1 : 0;
    if (ix->slots != NULL && (ix->used + more) * 2 <= size) {
        return 0;
    }
    size_t grown = size ? size : (size_t)1 << 16;
    while ((ix->used + more) * 2 > grown) {
        grown *= 2;
    }
    Slot *slots = big_alloc(grown * sizeof(Slot));
    if (slots == NULL) {
        return -1;
    }
    for (size_t i = 0; i < size; i++) {
        if (ix->slots[i].bytes != NULL) {
            size_t j = ix->slots[i].hash & (grown - 1);
            while (slots[j].bytes != NULL) {
                j = (j + 1) & (grown - 1);
            }
            slots[j] = ix->slots[i];
        }
    }
    free_slots(ix);
    ix->slots = slots;
    ix->mask = grown - 1;
    return 0;
}

/* Add one stored path whose hash is known (a copy is kept), room reserved; -1 when memory ran out. */
static int add_hashed(StoredIndex *ix, const char *bytes, size_t n, uint32_t hash)
{
    Slot *slot = find_from(ix, hash & ix->mask, bytes, n, hash);
    if (slot->bytes != NULL) {
        return 0;
    }
    char *copy = arena_take(ix, n ? n : 1);
    if (copy == NULL) {
        return -1;
    }
    memcpy(copy, bytes, n);
    slot->bytes = copy;
    slot->hash = hash;
    slot->len = (uint32_t)n;
    ix->used++;
    return 0;
}

/* Add a batch of stored paths: their slots are fetched from memory together. */
static int add_batch(StoredIndex *ix, const char *const *bytes, const size_t *n, int count)
{
    uint32_t hash[BATCH];
    for (int i = 0; i < count; i++) {
        if (n[i] >= MATCHED) {
            errno = ENAMETOOLONG;
            return -1;
        }
    }
    if (reserve(ix, (size_t)count) != 0) {
        return -1;
    }
    for (int i = 0; i < count; i++) {
        hash[i] = hash_of(bytes[i], n[i]);
        __builtin_prefetch(&ix->slots[hash[i] & ix->mask], 1);
    }
    for (int i = 0; i < count; i++) {
        if (add_hashed(ix, bytes[i], n[i], hash[i]) != 0) {
            return -1;
        }
    }
    return 0;
}

/* Look up a batch of walked paths: mark the stored paths they name, keep those that name none. */
static int match_batch(StoredIndex *ix, const char *const *name, const size_t *n, int count)
{
    uint32_t hash[BATCH];
    size_t at[BATCH];
    for (int i = 0; i < count; i++) {
        hash[i] = hash_of(name[i], n[i]);
        __builtin_prefetch(&ix->slots[hash[i] & ix->mask]);
    }
    for (int i = 0; i < count; i++) {
        at[i] = first_candidate(ix, hash[i]);
        if (ix->slots[at[i]].bytes != NULL) {
            __builtin_prefetch(ix->slots[at[i]].bytes);
        }
    }
    for (int i = 0; i < count; i++) {
        /* A name with a backslash is never a reference: such a stored path is unsafe. */
        Slot *slot = memchr(name[i], '\\', n[i]) ? NULL : find_from(ix, at[i], name[i], n[i], hash[i]);
        if (slot != NULL && slot->bytes != NULL) {
            slot->len |= MATCHED;
        } else if (buffer_put(&ix->unreferenced, name[i], n[i] + 1) != 0) {
            return -1;
        }
    }
    return 0;
}

/* COPY text's escapes, as guard.db.psqlcopy.unescape reads them: a backslash and the next byte. */
static size_t unescape(const char *in, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (in[i] != '\\' || i + 1 == n) {
            out[o++] = in[i];
            continue;
        }
        char c = in[++i];
        switch (c) {
        case 'b': out[o++] = '\b'; break;
        case 'f': out[o++] = '\f'; break;
        case 'n': out[o++] = '\n'; break;
        case 'r': out[o++] = '\r'; break;
        case 't': out[o++] = '\t'; break;
        case 'v': out[o++] = '\v'; break;
        default: out[o++] = c;
        }
    }
    return o;
}

static PyObject *index_add_copy(StoredIndex *ix, PyObject *arg)
{
    Py_buffer chunk;
    if (PyObject_GetBuffer(arg, &chunk, PyBUF_SIMPLE) != 0) {
        return NULL;
    }
    const char *p = chunk.buf, *end = p + chunk.len;
    if (chunk.len && end[-1] != '\n') {
        PyBuffer_Release(&chunk);
        PyErr_SetString(PyExc_ValueError, "a chunk must hold whole lines");
        return NULL;
    }
    Py_ssize_t rows = 0;
    char *scratch = NULL;
    size_t scratch_cap = 0;
    int failed = 0;
    const char *bytes[BATCH];
    size_t n[BATCH];
    int count = 0;
    while (p < end && !failed) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = (size_t)(nl - p);
        if (memchr(p, '\\', len) == NULL) {
            bytes[count] = p;
            n[count++] = len;
        } else { /* rare: unescaped into scratch and added on its own */
            if (len > scratch_cap) {
                char *grown = realloc(scratch, len);
                if (grown == NULL) {
                    failed = 1;
                    break;
                }
                scratch = grown;
                scratch_cap = len;
            }
            const char *one = scratch;
            size_t one_len = unescape(p, len, scratch);
            failed = add_batch(ix, &one, &one_len, 1) != 0;
        }
        rows++;
        p = nl + 1;
        if (count == BATCH || (p == end && count)) {
            failed = failed || add_batch(ix, bytes, n, count) != 0;
            count = 0;
        }
    }
    free(scratch);
    PyBuffer_Release(&chunk);
    if (failed) {
        return errno == ENAMETOOLONG ? PyErr_SetFromErrno(PyExc_OSError) : PyErr_NoMemory();
    }
    ix->rows += rows;
    return PyLong_FromSsize_t(rows);
}

static PyObject *index_add_values(StoredIndex *ix, PyObject *arg)
{
    PyObject *values = PySequence_Fast(arg, "values must be a sequence of str");
    if (values == NULL) {
        return NULL;
    }
    Py_ssize_t count = PySequence_Fast_GET_SIZE(values);
    for (Py_ssize_t i = 0; i < count; i++) {
        Py_ssize_t n;
        const char *bytes = PyUnicode_AsUTF8AndSize(PySequence_Fast_GET_ITEM(values, i), &n);
        if (bytes == NULL) {
            Py_DECREF(values);
            return NULL;
        }
        size_t len = (size_t)n;
        if (add_batch(ix, &bytes, &len, 1) != 0) {
            Py_DECREF(values);
            return errno == ENAMETOOLONG ? PyErr_SetFromErrno(PyExc_OSError) : PyErr_NoMemory();
        }
    }
    Py_DECREF(values);
    ix->rows += count;
    return PyLong_FromSsize_t(count);
}

static PyObject *index_match(StoredIndex *ix, PyObject *arg)
{
    Py_buffer blob;
    if (PyObject_GetBuffer(arg, &blob, PyBUF_SIMPLE) != 0) {
        return NULL;
    }
    const char *p = blob.buf, *end = p + blob.len;
    if (blob.len && end[-1] != '\0') {
        PyBuffer_Release(&blob);
        PyErr_SetString(PyExc_ValueError, "every name must end with a NUL byte");
        return NULL;
    }
    Py_ssize_t names = 0;
    int failed = reserve(ix, 0) != 0; /* an empty index still needs slots to look in */
    const char *name[BATCH];
    size_t n[BATCH];
    /* The GIL stays held: the table must not change under the loop. */
    while (p < end && !failed) {
        int count = 0;
        for (; count < BATCH && p < end; count++) {
            name[count] = p;
            n[count] = strlen(p);
            p += n[count] + 1;
        }
        failed = match_batch(ix, name, n, count) != 0;
        names += count;
    }
    PyBuffer_Release(&blob);
    if (failed) {
        return PyErr_NoMemory();
    }
    ix->walked += names;
    return PyLong_FromSsize_t(names);
}

static PyObject *index_unmatched(StoredIndex *ix, PyObject *unused)
{
    PyObject *list = PyList_New(0);
    if (list == NULL || ix->slots == NULL) {
        return list;
    }
    for (size_t i = 0; i <= ix->mask; i++) {
        Slot *slot = &ix->slots[i];
        if (slot->bytes == NULL || (slot->len & MATCHED)) {
            continue;
        }
        PyObject *text = PyUnicode_DecodeUTF8(slot->bytes, (Py_ssize_t)slot->len, "strict");
        if (text == NULL || PyList_Append(list, text) != 0) {
            Py_XDECREF(text);
            Py_DECREF(list);
            return NULL;
        }
        Py_DECREF(text);
    }
    return list;
}

static PyObject *index_unreferenced(StoredIndex *ix, PyObject *unused)
{
    PyObject *list = PyList_New(0);
    const Buffer *b = &ix->unreferenced;
    for (size_t at = 0; list != NULL && at < b->len;) {
        size_t n = strlen(b->data + at);
        PyObject *text = PyUnicode_DecodeFSDefaultAndSize(b->data + at, (Py_ssize_t)n);
        if (text == NULL || PyList_Append(list, text) != 0) {
            Py_XDECREF(text);
            Py_CLEAR(list);
            break;
        }
        Py_DECREF(text);
        at += n + 1;
    }
    return list;
}

static void index_free(StoredIndex *ix)
{
    free_slots(ix);
    ix->used = 0;
    while (ix->arena != NULL) {
        Block *next = ix->arena->next;
        munmap(ix->arena, ix->arena->size);
        ix->arena = next;
    }
    free(ix->unreferenced.data);
    ix->unreferenced = (Buffer){0};
}

static PyObject *index_close(StoredIndex *ix, PyObject *unused)
{
    index_free(ix);
    Py_RETURN_NONE;
}

static void index_dealloc(StoredIndex *ix)
{
    index_free(ix);
    Py_TYPE(ix)->tp_free((PyObject *)ix);
}

static PyObject *index_distinct(StoredIndex *ix, void *unused)
{
    return PyLong_FromSize_t(ix->used);
}

static PyObject *index_rows(StoredIndex *ix, void *unused)
{
    return PyLong_FromSsize_t(ix->rows);
}

static PyObject *index_walked(StoredIndex *ix, void *unused)
{
    return PyLong_FromSsize_t(ix->walked);
}

static PyMethodDef index_methods[] = {
    {"add_copy", (PyCFunction)index_add_copy, METH_O,
     "add_copy(chunk) -> rows: add whole lines of COPY text, one stored path each."},
    {"add_values", (PyCFunction)index_add_values, METH_O, "add_values(values) -> rows: add str paths."},
    {"match", (PyCFunction)index_match, METH_O,
     "match(blob) -> names: match NUL-terminated walked paths, keep those that name nothing."},
    {"unmatched", (PyCFunction)index_unmatched, METH_NOARGS,
     "unmatched() -> list[str]: the stored paths no walked path matched."},
    {"unreferenced", (PyCFunction)index_unreferenced, METH_NOARGS,
     "unreferenced() -> list[str]: the walked paths that matched no stored path."},
    {"close", (PyCFunction)index_close, METH_NOARGS, "close(): free the table now."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef index_getset[] = {
    {"rows", (getter)index_rows, NULL, "stored values added, duplicates included", NULL},
    {"distinct", (getter)index_distinct, NULL, "distinct stored paths", NULL},
    {"walked", (getter)index_walked, NULL, "walked paths matched", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject StoredIndexType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "guard.fs._pathsets.StoredIndex",
    .tp_basicsize = sizeof(StoredIndex),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The distinct stored paths, matched against walked paths in C.",
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)index_dealloc,
    .tp_methods = index_methods,
    .tp_getset = index_getset,
};

static PyMethodDef methods[] = {
    {"list_folder", list_folder, METH_VARARGS,
     "list_folder(path, prefix) -> (bytes, list[(str, bool)]): a folder's regular files, its others."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_pathsets", NULL, -1, methods};

PyMODINIT_FUNC PyInit__pathsets(void)
{
    /* A seed per process, so no crafted set of file names collides on purpose. */
    if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed) {
        seed = (uint64_t)(uintptr_t)&seed ^ (uint64_t)getpid() * 0x9E3779B97F4A7C15ull;
    }
    if (PyType_Ready(&StoredIndexType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
    Py_INCREF(&StoredIndexType);
    if (PyModule_AddObject(m, "StoredIndex", (PyObject *)&StoredIndexType) < 0) {
        Py_DECREF(&StoredIndexType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
