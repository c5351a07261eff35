# data.golden_*: the tokenizers' ids equal the npm reference encoders' (goldens in golden/, made by
# make_golden.sh; the corpus by make_corpus.py). The small corpus files run under the sanitizers;
# the 10 MB line is a test of its own (data.golden_<tok>_10mb: 0.4 s in Release, 1 s under ASan).
if(TARGET pt_data AND EXISTS ${CMAKE_SOURCE_DIR}/src/data/tokenizer.c)
  add_executable(test_golden ${CMAKE_CURRENT_LIST_DIR}/test_golden.c)
  target_include_directories(test_golden PRIVATE ${CMAKE_SOURCE_DIR}/bench)
  target_link_libraries(test_golden PRIVATE pt_data)
  foreach(tok gpt2 cl100k o200k)
    add_test(NAME data.golden_${tok}
             COMMAND test_golden ${tok} ${CMAKE_CURRENT_LIST_DIR}/golden/corpus ${CMAKE_CURRENT_LIST_DIR}/golden/${tok})
    set_tests_properties(data.golden_${tok} PROPERTIES LABELS "sanitize" TIMEOUT 60)
    add_test(NAME data.golden_${tok}_10mb
             COMMAND test_golden ${tok} ${CMAKE_CURRENT_LIST_DIR}/golden/corpus ${CMAKE_CURRENT_LIST_DIR}/golden/${tok} --longline)
    set_tests_properties(data.golden_${tok}_10mb PROPERTIES LABELS "sanitize" TIMEOUT 120)
  endforeach()
endif()
