# data.tokenizer*: the tokenizers (src/data/tokenizer.c, tok_hf.c) and `pipetrain tokenize`.
add_executable(test_tokenizer ${CMAKE_CURRENT_LIST_DIR}/test_tokenizer.c)
target_link_libraries(test_tokenizer PRIVATE pt_data Threads::Threads)
target_compile_definitions(test_tokenizer PRIVATE PT_TEST_VOCAB_DIR="${CMAKE_SOURCE_DIR}/src/data/vocab")
add_test(NAME data.tokenizer COMMAND test_tokenizer WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
set_tests_properties(data.tokenizer PROPERTIES LABELS "sanitize" TIMEOUT 120)

if(TARGET pipetrain)
  add_test(NAME data.tokenize_cli
           COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/tokenize_cli.sh $<TARGET_FILE:pipetrain>
           WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
  set_tests_properties(data.tokenize_cli PROPERTIES LABELS "sanitize" TIMEOUT 120)
endif()
