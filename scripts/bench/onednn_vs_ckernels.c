// oneDNN 2.6 (Debian libdnnl-dev) against blendd's C kernels on one thread: bf16 matmul, and oneDNN's
// u8s8s32 int8 GEMM for scale. Run by scripts/bench/onednn_vs_ckernels.sh; CI never runs it.
// Usage: onednn_vs_ckernels [M]   (N = K = 1024)
#include <oneapi/dnnl/dnnl.h>
#include "ckernels.h"
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <math.h>
#include <time.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
// Any oneDNN failure ends the run with its status.
#define CK(x) do{dnnl_status_t s=(x); if(s){printf("dnnl error %d at %s\n",s,#x);exit(1);}}while(0)
int main(int argc,char**argv){ int M=argc>1?atoi(argv[1]):192,N=1024,K=1024;
  printf("dnnl isa 0x%x\n",(unsigned)dnnl_get_effective_cpu_isa());
  dnnl_engine_t eng; CK(dnnl_engine_create(&eng,dnnl_cpu,0)); dnnl_stream_t st; CK(dnnl_stream_create(&st,eng,dnnl_stream_default_flags));
  dnnl_memory_desc_t a_md,b_md,c_md; dnnl_dims_t ad={M,K},bd={K,N},cd={M,N};
  CK(dnnl_memory_desc_init_by_tag(&a_md,2,ad,dnnl_bf16,dnnl_ab));
  CK(dnnl_memory_desc_init_by_tag(&b_md,2,bd,dnnl_bf16,dnnl_ba)); // weights [N][K] row-major = KxN with ba
  CK(dnnl_memory_desc_init_by_tag(&c_md,2,cd,dnnl_f32,dnnl_ab));
  dnnl_matmul_desc_t md; CK(dnnl_matmul_desc_init(&md,&a_md,&b_md,NULL,&c_md));
  dnnl_primitive_desc_t pd; CK(dnnl_primitive_desc_create(&pd,&md,NULL,eng,NULL)); dnnl_primitive_t mm; CK(dnnl_primitive_create(&mm,pd));
  uint16_t*a=malloc(2L*M*K),*b=malloc(2L*N*K); float*c=malloc(4L*M*N);
  for(long i=0;i<(long)M*K;i++)a[i]=0x3f80+(i%7); for(long i=0;i<(long)N*K;i++)b[i]=0x3c00+(i%5);
  dnnl_memory_t am,bm,cm; CK(dnnl_memory_create(&am,&a_md,eng,a)); CK(dnnl_memory_create(&bm,&b_md,eng,b)); CK(dnnl_memory_create(&cm,&c_md,eng,c));
  dnnl_exec_arg_t args[3]={{DNNL_ARG_SRC,am},{DNNL_ARG_WEIGHTS,bm},{DNNL_ARG_DST,cm}};
  float*af=malloc(4L*M*K),*wf=malloc(4L*N*K),*cc=malloc(4L*M*N); for(long i=0;i<(long)M*K;i++)af[i]=sinf(i); for(long i=0;i<(long)N*K;i++)wf[i]=cosf(i);
  uint32_t*p=malloc(4*bk_bf16_packed_words(N,K)),*ab=malloc(4L*M*(K/2)); bk_bf16_pack(wf,N,K,p); bk_bf16_round_rows(af,M,K,K,ab);
  uint8_t*ua=malloc((long)M*K); int8_t*sb=malloc((long)N*K); int32_t*ci=malloc(4L*M*N); int32_t co=0;
  for(int rep=0;rep<3;rep++){
   double best=1e9; for(int t=0;t<4;t++){double t0=now(); CK(dnnl_primitive_execute(mm,st,3,args)); CK(dnnl_stream_wait(st)); double dt=now()-t0; if(dt<best)best=dt;}
   double b2=1e9; for(int t=0;t<4;t++){double t0=now(); bk_bf16_gemm(ab,M,K,p,0,N,cc,N,1); double dt=now()-t0; if(dt<b2)b2=dt;}
   double b3=1e9; for(int t=0;t<4;t++){double t0=now(); CK(dnnl_gemm_u8s8s32('N','T','F',M,N,K,1.0f,ua,K,0,sb,K,0,0.0f,ci,N,&co)); double dt=now()-t0; if(dt<b3)b3=dt;}
   printf("M=%d N=%d K=%d 1 thread: oneDNN bf16 matmul %.1f GFLOP/s | ours (AVX512-BF16 C) %.1f GFLOP/s | oneDNN u8s8s32 gemm %.1f GOP/s\n",M,N,K,2.0*M*N*K/best/1e9,2.0*M*N*K/b2/1e9,2.0*M*N*K/b3/1e9);
  }
}
