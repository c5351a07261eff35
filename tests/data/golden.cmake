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

# The tokenizer benchmark end to end on 1 MiB: exits non-zero unless 2 threads give the ids of one.
if(TARGET pipetrain AND EXISTS ${CMAKE_SOURCE_DIR}/bench/bench_tokenize.c AND EXISTS ${CMAKE_SOURCE_DIR}/src/data/tokenizer.c)
  add_test(NAME data.bench_tokenize COMMAND pipetrain bench tokenize --json --mb 1 --threads 2)
  set_tests_properties(data.bench_tokenize PROPERTIES TIMEOUT 60)
endif()
