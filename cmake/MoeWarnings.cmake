# Warnings for moe's own code (LibTorch's headers come in as system headers and are not checked).
function(moe_set_warnings target)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Wshadow=local -Wnon-virtual-dtor>
    $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<BOOL:${MOE_WARNINGS_AS_ERRORS}>>:-Werror>)
endfunction()
