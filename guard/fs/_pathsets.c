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
#define ARENA_BLOCK (1 << 20)

typedef struct Block {
    struct Block *next;
    size_t used, cap;
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
        size_t cap = n > ARENA_BLOCK ? n : ARENA_BLOCK;
        Block *block = malloc(sizeof(Block) + cap);
        if (block == NULL) {
            return NULL;
        }
        block->next = ix->arena;
        block->used = 0;
        block->cap = cap;
        ix->arena = block;
    }
    char *at = ix->arena->data + ix->arena->used;
    ix->arena->used += n;
    return at;
}

static Slot *find(const StoredIndex *ix, const char *bytes, size_t n, uint32_t hash)
{
    for (size_t i = hash & ix->mask;; i = (i + 1) & ix->mask) {
        Slot *slot = &ix->slots[i];
        if (slot->bytes == NULL) {
            return slot;
        }
        if (slot->hash == hash && (slot->len & ~MATCHED) == n && memcmp(slot->bytes, bytes, n) == 0) {
            return slot;
        }
    }
}

static int grow(StoredIndex *ix)
{
    size_t size = ix->slots ? (ix->mask + 1) * 2 : 1 << 16;
    Slot *old = ix->slots;
    size_t old_size = old ? ix->mask + 1 : 0;
    ix->slots = calloc(size, sizeof(Slot));
    if (ix->slots == NULL) {
        ix->slots = old;
        return -1;
    }
    ix->mask = size - 1;
    for (size_t i = 0; i < old_size; i++) {
        if (old[i].bytes != NULL) {
            size_t j = old[i].hash & ix->mask;
            while (ix->slots[j].bytes != NULL) {
                j = (j + 1) & ix->mask;
            }
            ix->slots[j] = old[i];
        }
    }
    free(old);
    return 0;
}

/* Add one stored path (a copy is kept); -1 only when memory ran out. */
static int add_path(StoredIndex *ix, const char *bytes, size_t n)
{
    if (n >= MATCHED) {
        errno = ENAMETOOLONG;
        return -1;
    }
    if ((ix->used + 1) * 2 > (ix->slots ? ix->mask + 1 : 0) && grow(ix) != 0) {
        return -1;
    }
    uint32_t hash = hash_of(bytes, n);
    Slot *slot = find(ix, bytes, n, hash);
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
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = (size_t)(nl - p);
        const char *bytes = p;
        if (memchr(p, '\\', n) != NULL) {
            if (n > scratch_cap) {
                char *grown = realloc(scratch, n);
                if (grown == NULL) {
                    failed = 1;
                    break;
                }
                scratch = grown;
                scratch_cap = n;
            }
            n = unescape(p, n, scratch);
            bytes = scratch;
        }
        if (add_path(ix, bytes, n) != 0) {
            failed = 1;
            break;
        }
        rows++;
        p = nl + 1;
    }
    free(scratch);
    PyBuffer_Release(&chunk);
    if (failed) {
        return PyErr_NoMemory();
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
        if (add_path(ix, bytes, (size_t)n) != 0) {
            Py_DECREF(values);
            return PyErr_NoMemory();
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
    int failed = 0;
    /* The GIL stays held: the table must not change under the loop (about 0.1 us a name). */
    while (p < end) {
        size_t n = strlen(p);
        Slot *slot = NULL;
        if (ix->slots != NULL && memchr(p, '\\', n) == NULL) {
            slot = find(ix, p, n, hash_of(p, n));
        }
        if (slot != NULL && slot->bytes != NULL) {
            slot->len |= MATCHED;
        } else if (buffer_put(&ix->unreferenced, p, n + 1) != 0) {
            failed = 1;
            break;
        }
        names++;
        p += n + 1;
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
    free(ix->slots);
    ix->slots = NULL;
    ix->mask = ix->used = 0;
    while (ix->arena != NULL) {
        Block *next = ix->arena->next;
        free(ix->arena);
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
