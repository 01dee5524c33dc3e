/* fuzz_h5edit: see fuzz_h5edit.h. */
#include "fuzz_h5edit.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_OBJ 128

typedef struct {
    char ds[MAX_OBJ][128];
    int n_ds;
    char attr_obj[MAX_OBJ][128], attr_name[MAX_OBJ][64];
    int n_attr;
} objects;

static herr_t on_attr(hid_t loc, const char *name, const H5A_info_t *info, void *data) {
    (void)loc;
    (void)info;
    objects *o = data;
    if (o->n_attr < MAX_OBJ && strlen(name) < 64) {
        snprintf(o->attr_name[o->n_attr], 64, "%s", name);
        o->n_attr++;
    }
    return 0;
}

static void attrs_of(hid_t f, const char *obj, objects *o) {
    int before = o->n_attr;
    H5Aiterate_by_name(f, obj, H5_INDEX_NAME, H5_ITER_INC, NULL, on_attr, o, H5P_DEFAULT);
    for (int i = before; i < o->n_attr; i++) snprintf(o->attr_obj[i], 128, "%s", obj);
}

static herr_t on_link(hid_t g, const char *name, const H5L_info_t *info, void *data) {
    (void)info;
    objects *o = data;
    char path[128];
    if (snprintf(path, sizeof path, "/%s", name) >= (int)sizeof path) return 0;
    hid_t d = H5Dopen2(g, path, H5P_DEFAULT);
    if (d >= 0) {
        H5Dclose(d);
        if (o->n_ds < MAX_OBJ) snprintf(o->ds[o->n_ds++], 128, "%s", path);
    }
    attrs_of(g, path, o);
    return 0;
}

/* One element of a dataset as a 1-element hyperslab (any rank). */
static hid_t select_element(hid_t ds, unsigned idx) {
    hid_t space = H5Dget_space(ds);
    int rank = H5Sget_simple_extent_ndims(space);
    hsize_t dims[8] = {0}, start[8] = {0}, count[8];
    if (rank < 1 || rank > 8) {
        H5Sclose(space);
        return -1;
    }
    H5Sget_simple_extent_dims(space, dims, NULL);
    hsize_t total = 1;
    for (int i = 0; i < rank; i++) total *= dims[i];
    if (total == 0) {
        H5Sclose(space);
        return -1;
    }
    hsize_t k = idx % total;
    for (int i = rank - 1; i >= 0; i--) {
        start[i] = k % dims[i];
        k /= dims[i];
        count[i] = 1;
    }
    H5Sselect_hyperslab(space, H5S_SELECT_SET, start, NULL, count, NULL);
    return space;
}

static void write_element(hid_t f, const char *path, unsigned idx, double v) {
    hid_t ds = H5Dopen2(f, path, H5P_DEFAULT);
    if (ds < 0) return;
    hid_t t = H5Dget_type(ds);
    H5T_class_t cls = H5Tget_class(t);
    H5Tclose(t);
    hid_t space = (cls == H5T_INTEGER || cls == H5T_FLOAT) ? select_element(ds, idx) : -1;
    if (space >= 0) {
        hsize_t one = 1;
        hid_t mem = H5Screate_simple(1, &one, NULL);
        if (cls == H5T_FLOAT) H5Dwrite(ds, H5T_NATIVE_DOUBLE, mem, space, H5P_DEFAULT, &v);
        else {
            long long x = isfinite(v) ? (long long)fmax(fmin(v, 9e18), -9e18) : -1;
            H5Dwrite(ds, H5T_NATIVE_LLONG, mem, space, H5P_DEFAULT, &x);
        }
        H5Sclose(mem);
        H5Sclose(space);
    }
    H5Dclose(ds);
}

static void copy_string(hid_t f, const char *path, unsigned from, unsigned to) {
    hid_t ds = H5Dopen2(f, path, H5P_DEFAULT);
    if (ds < 0) return;
    hid_t t = H5Dget_type(ds);
    if (H5Tget_class(t) == H5T_STRING && H5Tis_variable_str(t) > 0) {
        hid_t a = select_element(ds, from), b = select_element(ds, to);
        hsize_t one = 1;
        hid_t mem = H5Screate_simple(1, &one, NULL);
        char *s = NULL;
        if (a >= 0 && b >= 0 && H5Dread(ds, t, mem, a, H5P_DEFAULT, &s) >= 0 && s) {
            H5Dwrite(ds, t, mem, b, H5P_DEFAULT, &s);
            H5free_memory(s);
        }
        H5Sclose(mem);
        if (a >= 0) H5Sclose(a);
        if (b >= 0) H5Sclose(b);
    }
    H5Tclose(t);
    H5Dclose(ds);
}

static void write_attr(hid_t f, const char *obj, const char *name, double v) {
    hid_t a = H5Aopen_by_name(f, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0) return;
    hid_t t = H5Aget_type(a), s = H5Aget_space(a);
    H5T_class_t cls = H5Tget_class(t);
    if (H5Sget_simple_extent_npoints(s) == 1) {
        if (cls == H5T_FLOAT) H5Awrite(a, H5T_NATIVE_DOUBLE, &v);
        else if (cls == H5T_INTEGER) {
            long long x = isfinite(v) ? (long long)fmax(fmin(v, 9e18), -9e18) : -1;
            H5Awrite(a, H5T_NATIVE_LLONG, &x);
        }
    }
    H5Sclose(s);
    H5Tclose(t);
    H5Aclose(a);
}

static double value_of(const uint8_t *p, int special) {
    static const double specials[] = {NAN, INFINITY, -INFINITY, -0.0, -1e-30, 3e38, -1.0, 0.0};
    if (special) return specials[p[0] % 8];
    int32_t i;
    memcpy(&i, p, 4);
    /* small integers most of the time (counts, steps, sizes), else a float's bits */
    if (p[3] & 0x80) {
        float x;
        memcpy(&x, p, 4);
        return x;
    }
    return (double)(i % 4096);
}

int bf_fuzz_h5_edit(const void *base, size_t base_len, const uint8_t *edits, size_t n_edits, unsigned char **out,
                    size_t *out_len) {
    *out = NULL;
    *out_len = 0;
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    void *image;
    memcpy(&image, &base, sizeof image);
    H5Pset_fapl_core(fapl, 1 << 16, 0);
    H5Pset_file_image(fapl, image, base_len);
    hid_t f = H5Fopen("fuzz-edit.h5 [in memory]", H5F_ACC_RDWR, fapl);
    H5Pclose(fapl);
    if (f < 0) return -1;
    objects *o = calloc(1, sizeof *o);
    attrs_of(f, "/", o);
    H5Lvisit(f, H5_INDEX_NAME, H5_ITER_INC, on_link, o);
    for (size_t k = 0; k + 8 <= n_edits && k < 8 * 64; k += 8) {
        const uint8_t *e = edits + k;
        unsigned op = e[0] % 6, obj = e[1], idx = (unsigned)e[2] | (unsigned)e[3] << 8;
        double v = value_of(e + 4, op == 5);
        if ((op == 0 || op == 2 || op == 4 || op == 5) && o->n_ds == 0) continue;
        if ((op == 1 || op == 3) && o->n_attr == 0) continue;
        const char *ds = o->ds[obj % (o->n_ds ? o->n_ds : 1)];
        int ai = (int)(obj % (unsigned)(o->n_attr ? o->n_attr : 1));
        switch (op) {
        case 0:
        case 5: write_element(f, ds, idx, v); break;
        case 1: write_attr(f, o->attr_obj[ai], o->attr_name[ai], v); break;
        case 2: H5Ldelete(f, ds, H5P_DEFAULT); break;
        case 3: H5Adelete_by_name(f, o->attr_obj[ai], o->attr_name[ai], H5P_DEFAULT); break;
        case 4: copy_string(f, ds, idx & 0xff, idx >> 8); break;
        }
    }
    free(o);
    int rc = -1;
    if (H5Fflush(f, H5F_SCOPE_LOCAL) >= 0) {
        ssize_t n = H5Fget_file_image(f, NULL, 0);
        if (n > 0 && (*out = malloc((size_t)n)) != NULL && H5Fget_file_image(f, *out, (size_t)n) == n) {
            *out_len = (size_t)n;
            rc = 0;
        }
    }
    H5Fclose(f);
    if (rc) {
        free(*out);
        *out = NULL;
    }
    return rc;
}
