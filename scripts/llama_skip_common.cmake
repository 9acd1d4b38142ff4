# Injected into llama.cpp's CMake project scope via CMAKE_PROJECT_llama.cpp_INCLUDE.
# llama-cpp-python force-sets the cache entry LLAMA_BUILD_COMMON=ON, but its Python
# bindings never load llama.cpp's common/ library (chat parsers, cpp-httplib), which is
# most of the compile time. A normal variable shadows the cache entry in this scope.
set(LLAMA_BUILD_COMMON OFF)
