#ifndef BLENDD_CLIBPQ_SHIM_H
#define BLENDD_CLIBPQ_SHIM_H
#include <libpq-fe.h>
#endif
