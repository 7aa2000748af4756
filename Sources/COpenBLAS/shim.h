#ifndef BLENDD_COPENBLAS_SHIM_H
#define BLENDD_COPENBLAS_SHIM_H
#include <cblas.h>
#endif
