# Decides the kernels and CUDA tiers and defines moe::torch, the one target through which moe links
# LibTorch. On the CPU tier moe links only libtorch_cpu and libc10, so a CUDA wheel of torch serves
# the CPU tier without cuDNN/cuBLAS; the CUDA tier links the whole of LibTorch.
include(CheckLanguage)

# ---- kernels tier: nvcc present -------------------------------------------------------------------
set(MOE_KERNELS_ON OFF)
set(MOE_KERNELS_WHY "disabled by MOE_ENABLE_KERNELS=OFF")
if(NOT MOE_ENABLE_KERNELS STREQUAL "OFF")
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    enable_language(CUDA)
    find_package(CUDAToolkit REQUIRED)
    set(MOE_KERNELS_ON ON)
    set(MOE_KERNELS_WHY "nvcc ${CUDAToolkit_VERSION}, sm_80;sm_90")
  elseif(MOE_ENABLE_KERNELS STREQUAL "ON")
    message(FATAL_ERROR "MOE_ENABLE_KERNELS=ON but no CUDA compiler (nvcc) was found")
  else()
    set(MOE_KERNELS_WHY "no nvcc found")
  endif()
endif()

# ---- CUDA tier: CUDA LibTorch + matching toolkit + linkable LibTorch CUDA libraries -----------------
set(MOE_CUDA_ON OFF)
set(MOE_TORCH_CUDA_VERSION "")
if(TARGET torch_cuda OR TARGET torch_cuda_library)
  set(MOE_TORCH_CUDA_VERSION "${CUDA_VERSION}")
endif()
if(MOE_ENABLE_CUDA STREQUAL "OFF")
  set(MOE_CUDA_WHY "disabled by MOE_ENABLE_CUDA=OFF")
elseif(MOE_TORCH_CUDA_VERSION STREQUAL "")
  set(MOE_CUDA_WHY "LibTorch is a CPU build")
elseif(NOT MOE_KERNELS_ON)
  set(MOE_CUDA_WHY "LibTorch has CUDA ${MOE_TORCH_CUDA_VERSION} but no nvcc was found")
else()
  string(REGEX MATCH "^[0-9]+\\.[0-9]+" _tk "${CUDAToolkit_VERSION}")
  # libtorch_cuda.so needs cuDNN, cuBLAS, cuSPARSELt, NCCL, ... at link and load time. AUTO turns the
  # tier on only when torch's own CUDA wheels sit beside it (a full `pip install torch`, as on the GPU
  # machine); the CPU-tier virtualenv installs torch without them. MOE_ENABLE_CUDA=ON skips this test
  # (for a LibTorch whose CUDA libraries come from the system).
  get_filename_component(_torch_lib_dir "${TORCH_LIBRARY}" DIRECTORY)
  find_library(MOE_TORCH_CUDNN NAMES libcudnn.so.9 cudnn
               PATHS ${_torch_lib_dir}/../../nvidia/cudnn/lib NO_DEFAULT_PATH)
  if(NOT _tk STREQUAL MOE_TORCH_CUDA_VERSION)
    set(MOE_CUDA_WHY "LibTorch CUDA ${MOE_TORCH_CUDA_VERSION} != toolkit ${_tk}")
  elseif(NOT MOE_TORCH_CUDNN AND NOT MOE_ENABLE_CUDA STREQUAL "ON")
    set(MOE_CUDA_WHY "LibTorch CUDA ${MOE_TORCH_CUDA_VERSION}, but its CUDA library wheels are not installed beside it")
  else()
    set(MOE_CUDA_ON ON)
    set(MOE_CUDA_WHY "LibTorch CUDA ${MOE_TORCH_CUDA_VERSION}")
  endif()
endif()
if(MOE_ENABLE_CUDA STREQUAL "ON" AND NOT MOE_CUDA_ON)
  message(FATAL_ERROR "MOE_ENABLE_CUDA=ON but the CUDA tier is unavailable: ${MOE_CUDA_WHY}")
endif()

add_library(moe_torch INTERFACE)
add_library(moe::torch ALIAS moe_torch)
set_target_properties(moe_torch PROPERTIES EXPORT_NAME torch)
if(MOE_CUDA_ON)
  target_link_libraries(moe_torch INTERFACE torch)
else()
  target_link_libraries(moe_torch INTERFACE torch_cpu c10)
  # torch_cpu carries torch/include but not the C++ frontend's include folder; the installed
  # moeConfig.cmake adds TORCH_INCLUDE_DIRS of the consumer's own find_package(Torch).
  target_include_directories(moe_torch SYSTEM INTERFACE "$<BUILD_INTERFACE:${TORCH_INCLUDE_DIRS}>")
endif()
