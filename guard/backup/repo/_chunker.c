/* Content-defined cut points of a buffer (a gear rolling hash), for guard.backup.repo.chunker.
 *
 * cuts(data, min_size, mask, max_size) -> list[int]: the lengths of the chunks data is cut into.
 * A chunk ends after the byte at which (hash & mask) == 0 once it holds at least min_size bytes, or
 * at max_size bytes, or at the end of data. hash = (hash << 1) + GEAR[byte], restarted at 0 at each
 * chunk's start, so a cut depends only on the 64 bytes before it: an insertion moves the cuts near
 * it and no others. chunker.cuts_py is the same in Python, and gives the same lengths.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

static uint64_t gear[256];

/* splitmix64 from seed 0: the table chunker.gear_table() builds too */
static void gear_init(void)
{
    uint64_t state = 0;
    for (int i = 0; i < 256; i++) {
        state += 0x9E3779B97F4A7C15ULL;
        uint64_t z = state;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        gear[i] = z ^ (z >> 31);
    }
}

static PyObject *cuts(PyObject *self, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t min_size, max_size;
    unsigned long long mask;
    if (!PyArg_ParseTuple(args, "y*nKn", &view, &min_size, &mask, &max_size))
        return NULL;
    if (min_size < 1 || max_size < min_size) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "need 1 <= min_size <= max_size");
        return NULL;
    }
    PyObject *out = PyList_New(0);
    if (out == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    const unsigned char *data = view.buf;
    Py_ssize_t length = view.len, start = 0;
    while (start < length) {
        Py_ssize_t left = length - start, end;
        if (left <= min_size) {
            end = length;
        } else {
            Py_ssize_t limit = left < max_size ? left : max_size;
            uint64_t hash = 0;
            Py_ssize_t i;
            Py_BEGIN_ALLOW_THREADS
            /* the bytes before min_size only warm the hash: a cut there would be too short */
            for (i = min_size > 64 ? min_size - 64 : 0; i < min_size; i++)
                hash = (hash << 1) + gear[data[start + i]];
            for (; i < limit; i++) {
                hash = (hash << 1) + gear[data[start + i]];
                if ((hash & mask) == 0) {
                    i++;
                    break;
                }
            }
            Py_END_ALLOW_THREADS
            end = start + i;
        }
        PyObject *size = PyLong_FromSsize_t(end - start);
        if (size == NULL || PyList_Append(out, size) < 0) {
            Py_XDECREF(size);
            Py_DECREF(out);
            PyBuffer_Release(&view);
            return NULL;
        }
        Py_DECREF(size);
        start = end;
    }
    PyBuffer_Release(&view);
    return out;
}

static PyMethodDef methods[] = {
    {"cuts", cuts, METH_VARARGS,
     "cuts(data, min_size, mask, max_size) -> list[int]: content-defined chunk lengths of data."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_chunker", NULL, -1, methods};

PyMODINIT_FUNC PyInit__chunker(void)
{
    gear_init();
    return PyModule_Create(&module);
}
